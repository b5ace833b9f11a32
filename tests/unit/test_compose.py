"""Every marketing mail compliant by construction (C23, C24, C25, C29, C30): parse what the
composer makes, as a mail client or a mailbox provider would."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, message_from_string, policy
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from campaigns.clock import FixedClock
from campaigns.config import CategoryNames
from campaigns.errors import InvalidInput
from campaigns.sending.content import contact_fields_read, environment
from campaigns.tokens import Kind, TokenSigner
from mailer.delivery.compose import (
    CampaignComposer,
    CampaignInfo,
    CompositionError,
    Recipient,
)
from mailer.delivery.dkim import DkimError, DkimSigner
from mailer.delivery.footer import TEXT, MailBasis
from mailer.delivery.mime import HeaderInjection
from tests.conftest import ROOT, business_config

TEMPLATES = ROOT / "templates" / "email"
GOLDEN = ROOT / "tests" / "golden"
SECRET = b"golden-secret-key-0123456789abcdefghijklmnop"
NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
CONSENT = MailBasis("consent", datetime(2026, 3, 14, 10, 0, tzinfo=UTC), purpose="newsletter")
CUSTOMER = MailBasis("soft_opt_in", datetime(2026, 10, 2, 10, 0, tzinfo=UTC), categories=("tea",))

FOOTER = {
    "nl": (
        "Reclame",
        "Ondernemingsnummer",
        "Afmelden",
        "Privacyverklaring",
        "toestemming gaf voor onze nieuwsbrief",
        "14-03-2026",
    ),
    "fr": (
        "Publicité",
        "Numéro d'entreprise",
        "Se désinscrire",
        "Déclaration de confidentialité",
        "de recevoir notre newsletter",
        "14/03/2026",
    ),
    "en": (
        "Advertisement",
        "Enterprise number",
        "Unsubscribe",
        "Privacy notice",
        "you agreed to receive our newsletter",
        "2026-03-14",
    ),
}


def composer(template: str = "newsletter.html", **kw) -> CampaignComposer:
    info = CampaignInfo(
        "c" * 32, "Maart", "newsletter", kw.pop("subject", "Nieuws van maart"), template
    )
    return CampaignComposer(
        info,
        sender=kw.pop("sender", business_config().sender),
        public_url="https://mail.ollekebolleke.be",
        templates_dir=kw.pop("templates_dir", TEMPLATES),
        signer=TokenSigner((SECRET,)),
        clock=FixedClock(NOW),
        **kw,
    )


def recipient(locale: str = "nl", basis: MailBasis = CONSENT, **kw) -> Recipient:
    values = {
        "delivery_id": 1234,
        "contact_id": "d" * 32,
        "email": "an@example.be",
        "name": "An Peeters",
        "locale": locale,
        "basis": basis,
    }
    values.update(kw)
    return Recipient(**values)


def parse(data: bytes):
    return message_from_bytes(data, policy=policy.default)


@pytest.mark.parametrize("locale", ["nl", "fr", "en"])
def test_c23_c29_c30_headers_and_footer_in_each_language(locale):
    composed = composer().compose(recipient(locale))
    message = parse(composed.data)
    signer = TokenSigner((SECRET,))
    token = signer.delivery_token(Kind.UNSUBSCRIBE, 1234)
    # C29: the shop, truthfully
    assert message["From"] == "Olleke Bolleke <nieuws@ollekebolleke.be>"
    assert message["Reply-To"] == "hallo@ollekebolleke.be"
    assert composed.envelope_from.startswith("bounces+")
    assert composed.envelope_from.endswith("@ollekebolleke.be")
    bounce = composed.envelope_from.split("+")[1].split("@")[0]
    assert signer.read_delivery(Kind.BOUNCE, bounce) == 1234
    # C23: RFC 2369 and RFC 8058
    assert message["List-Unsubscribe"] == (
        f"<https://mail.ollekebolleke.be/u/{token}>, "
        f"<mailto:unsubscribe+{token}@ollekebolleke.be?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] and message["Date"] == "Fri, 27 Nov 2026 09:30:00 +0000"
    assert message["Feedback-ID"].startswith("c" * 32 + ":newsletter:")
    assert message["To"] == "An Peeters <an@example.be>"
    # multipart/alternative with text and HTML that say the same things
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (text, html):
        for needle in (
            *FOOTER[locale],
            "Olleke Bolleke BV",
            "Kerkstraat 1, 2000 Antwerpen",
            "BE 0123.456.789",
            "hallo@ollekebolleke.be",
            "https://ollekebolleke.be/privacy",
            f"/u/{token}",
            "/p/",
        ):
            assert needle.replace("'", "&#39;") in part or needle in part, (locale, needle)
    assert "An" in text  # personalised greeting
    # C24: no plain address in the unsubscribe URI
    assert "an@example.be" not in message["List-Unsubscribe"]


def test_c30_why_line_names_the_purchase_for_soft_opt_in():
    text = parse(composer().compose(recipient("en", CUSTOMER)).data).get_body(("plain",))
    assert "because you bought tea from us on 2026-10-02" in text.get_content()


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        ("nl", "omdat je op 02-10-2026 thee en kruidenthee bij ons kocht"),
        ("fr", "parce que vous avez acheté thé et tisane chez"),
        ("en", "because you bought tea and herbal tea from us on 2026-10-02"),
    ],
)
def test_c30_the_purchase_is_named_in_the_persons_language(locale, words):
    """[category_names]: "thee", not the key `tea`; a key without a name reads as words."""
    names = CategoryNames(
        {
            "tea": {"nl": "thee", "fr": "thé", "en": "tea"},
            "herbal-tea": {"nl": "kruidenthee", "fr": "tisane"},
        }
    )
    basis = dataclasses.replace(CUSTOMER, categories=("tea", "herbal-tea"))
    named = composer(category_names=names).compose(recipient(locale, basis))
    text = parse(named.data).get_body(("plain",)).get_content()
    assert words in " ".join(text.split())


def test_non_ascii_subject_and_name_are_encoded():
    composed = composer(subject="Thé vert -15 % à Liège").compose(recipient(name="Zoë Müller"))
    raw_head = composed.data.split(b"\r\n\r\n")[0]
    assert raw_head.isascii()
    message = parse(composed.data)
    assert message["Subject"] == "Thé vert -15 % à Liège"
    assert message["To"] == "Zoë Müller <an@example.be>"


def test_well_formed_for_content_filters():
    data = composer().compose(recipient()).data
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    message = parse(data)
    assert message.defects == []
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]  # never an HTML-only body
    html = message.get_body(("html",)).get_content()
    assert "<img" not in html  # no tracking pixel without tracking consent (C35)


@pytest.mark.parametrize("field", ["name", "email"])
def test_header_injection_is_refused(field):
    bad = {"name": "An\r\nBcc: x@example.be", "email": "an@example.be\r\nBcc: x@example.be"}
    with pytest.raises(HeaderInjection):
        composer().compose(recipient(**{field: bad[field]}))
    with pytest.raises(HeaderInjection):
        composer(subject="Hi\nBcc: x@example.be")


def test_composition_fails_closed_without_sender_identity():
    sender = dataclasses.replace(business_config().sender, enterprise_number=" ")
    with pytest.raises(CompositionError, match="enterprise_number"):
        composer(sender=sender)


def test_composition_fails_closed_when_the_layout_loses_the_footer(tmp_path):
    for item in TEMPLATES.iterdir():
        if item.is_file():
            (tmp_path / item.name).write_bytes(item.read_bytes())
    (tmp_path / "layout").mkdir()
    (tmp_path / "layout" / "base.txt").write_text((TEMPLATES / "layout" / "base.txt").read_text())
    html = (TEMPLATES / "layout" / "base.html").read_text()
    (tmp_path / "layout" / "base.html").write_text(html.replace("{{ footer.why }}", ""))
    with pytest.raises(CompositionError, match="why"):
        composer(templates_dir=tmp_path).compose(recipient())


def layout_copy(tmp_path: Path, html=lambda s: s, text=lambda s: s) -> Path:
    """The example templates with the layout changed by `html` and `text`."""
    for item in TEMPLATES.iterdir():
        if item.is_file():
            (tmp_path / item.name).write_bytes(item.read_bytes())
    (tmp_path / "layout").mkdir()
    layout = TEMPLATES / "layout"
    (tmp_path / "layout" / "base.html").write_text(html((layout / "base.html").read_text()))
    (tmp_path / "layout" / "base.txt").write_text(text((layout / "base.txt").read_text()))
    return tmp_path


def full_render(made: CampaignComposer) -> CampaignComposer:
    """The same composer without its pre-rendered layout: the full Jinja render per message."""
    made.prefilled = dict.fromkeys(made.prefilled)
    return made


ODD_SENDER = dataclasses.replace(
    business_config().sender,
    legal_name="Olleke & Bolleke <BV> {0}",
    address="Kerkstraat 'één', 2000 \"Antwerpen\"",
)


@pytest.mark.parametrize("sender", [business_config().sender, ODD_SENDER])
@pytest.mark.parametrize("basis", [CONSENT, CUSTOMER, dataclasses.replace(CUSTOMER, categories=())])
@pytest.mark.parametrize("name", ["An Peeters", "Zoë <Müller> & {co}", None])
@pytest.mark.parametrize("locale", ["nl", "fr", "en", "de", None])
def test_the_pre_rendered_layout_equals_the_full_render(sender, basis, name, locale):
    made = composer("promotion.html", sender=sender)
    assert all(made.prefilled.values())  # the example layout takes the fast path
    who = recipient(locale, basis, name=name, contact_id="0f" * 16, delivery_id=987654321)
    expected = full_render(composer("promotion.html", sender=sender)).compose(who)
    assert made.compose(who) == expected


@pytest.mark.parametrize(
    ("extra", "shown"),
    [
        # the marker comes out changed: the split sees it
        ("{{ footer.why|upper }}", "YOU RECEIVE THIS EMAIL BECAUSE ON 2026-03-14"),
        # the marker's length is not the value's: the comparison with the full render sees it
        ("{{ footer.unsubscribe_url|length }} characters", "72 characters"),
        # a branch on a value: no sample need tell, so the layout is read before it is trusted
        ("{% if footer.why|length > 1 %}long{% endif %}", "long"),
        ("{% if body %}with a body{% endif %}", "with a body"),
        ("{{ footer['why'] }}", "You receive this email because"),
    ],
)
def test_a_layout_that_filters_a_footer_value_takes_the_full_render(tmp_path, extra, shown):
    changed = layout_copy(tmp_path, html=lambda s: s.replace("</body>", f"<p>{extra}</p></body>"))
    made = composer(templates_dir=changed)
    assert not any(made.prefilled.values())
    html = parse(made.compose(recipient("en")).data).get_body(("html",)).get_content()
    assert shown in html


def test_c30_a_layout_that_changes_a_footer_piece_is_refused(tmp_path):
    upper = layout_copy(
        tmp_path, html=lambda s: s.replace("{{ footer.why }}", "{{ footer.why|upper }}")
    )
    made = composer(templates_dir=upper)
    assert not any(made.prefilled.values())
    with pytest.raises(CompositionError, match="why"):
        made.compose(recipient())


def test_a_layout_with_braces_keeps_the_fast_path(tmp_path):
    styled = layout_copy(
        tmp_path,
        html=lambda s: s.replace(
            "</head>", "<style>p { color: #555; } /* {0} {x} */</style></head>"
        ),
        text=lambda s: s + "{{ '{' }}{x}}\n",
    )
    made = composer(templates_dir=styled)
    assert all(made.prefilled.values())
    for locale in ("nl", "fr", "en"):
        expected = full_render(composer(templates_dir=styled)).compose(recipient(locale))
        assert made.compose(recipient(locale)) == expected
        assert b"p { color: #555; }" in expected.data


@pytest.mark.parametrize(
    ("part", "piece", "key"),
    [
        ("html", "{{ footer.why }}", "why"),
        ("txt", "{{ footer.unsubscribe_url }}", "unsubscribe url"),
        ("txt", "{{ footer.legal_name }}", "legal name"),
        ("html", "{{ footer.contact_email }}", "contact email"),
    ],
)
def test_c30_a_layout_missing_a_footer_piece_is_refused(tmp_path, part, piece, key):
    def drop(s: str) -> str:
        return s.replace(piece, "")

    broken = layout_copy(tmp_path, **{"html" if part == "html" else "text": drop})
    made = composer(templates_dir=broken)
    assert not any(made.prefilled.values())  # never pre-rendered without its footer
    with pytest.raises(CompositionError, match=key):
        made.compose(recipient())


def test_the_date_header_follows_the_clock():
    made = composer()
    first = parse(made.compose(recipient()).data)["Date"]
    made.clock.advance(timedelta(microseconds=500))
    assert parse(made.compose(recipient()).data)["Date"] == first
    made.clock.advance(timedelta(seconds=1))
    assert parse(made.compose(recipient()).data)["Date"] == "Fri, 27 Nov 2026 09:30:01 +0000"


def test_the_why_line_names_only_the_day():
    """why_line is cached per day: a date format must not show anything finer."""
    for words in TEXT.values():
        assert set(re.findall(r"%.", str(words["date"]))) <= {"%d", "%m", "%Y"}


def test_a_template_reaching_outside_its_context_is_refused(tmp_path):
    (tmp_path / "bad.html").write_text("<p>ok</p>\n<p>{{ contact.__class__.__mro__ }}</p>\n")
    (tmp_path / "bad.txt").write_text("ok\n")
    (tmp_path / "broken.html").write_text("<p>\n{% if %}</p>\n")
    (tmp_path / "broken.txt").write_text("ok\n")
    (tmp_path / "unknown.html").write_text("<p>\n\n{{ secrets }}</p>\n")
    (tmp_path / "unknown.txt").write_text("ok\n")
    from campaigns.sending.content import CampaignContent

    for name, line in (("bad.html", 2), ("broken.html", 2), ("unknown.html", 3)):
        with pytest.raises(InvalidInput) as caught:
            CampaignContent(tmp_path, name, "nl").check()
        assert f"{name}, line {line}" in caught.value.message


@pytest.mark.parametrize("template", ["newsletter.html", "promotion.html"])
@pytest.mark.parametrize("locale", ["nl", "fr", "en"])
def test_golden_file(template, locale):
    """The exact bytes of each example template in each language. To accept a deliberate
    change: UPDATE_GOLDEN=1 pytest tests/unit/test_compose.py, and review the diff."""
    data = composer(template).compose(recipient(locale)).data
    golden = GOLDEN / f"{template.removesuffix('.html')}.{locale}.eml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_bytes(data)
    assert data == golden.read_bytes()


def rsa_key() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def ed25519_key() -> tuple[bytes, bytes]:
    import base64

    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw), b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)


def dns_for(record: bytes):
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.ollekebolleke.be."
        return record

    return dnsfunc


@pytest.mark.parametrize(
    ("make", "algorithm"), [(rsa_key, "rsa-sha256"), (ed25519_key, "ed25519-sha256")]
)
def test_c25_dkim_signature_covers_the_one_click_headers_and_verifies(make, algorithm):
    private, record = make()
    signer = DkimSigner("s1", "ollekebolleke.be", private, algorithm=algorithm)
    data = composer(dkim=signer).compose(recipient()).data
    signature = parse(data)["DKIM-Signature"]
    signed = set(re.search(r"h=([^;]+)", signature.replace(" ", "")).group(1).lower().split(":"))
    assert {
        "from",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    } <= signed
    assert dkim.verify(data, dnsfunc=dns_for(record))


def test_c25_signer_refuses_to_leave_required_headers_out():
    private, _ = rsa_key()
    with pytest.raises(DkimError, match="list-unsubscribe-post"):
        DkimSigner(
            "s1",
            "ollekebolleke.be",
            private,
            headers=(b"from", b"subject", b"date", b"message-id", b"list-unsubscribe"),
        )


def test_c25_failed_signing_refuses_to_send():
    signer = DkimSigner("s1", "ollekebolleke.be", b"not a key")
    with pytest.raises(DkimError):
        composer(dkim=signer).compose(recipient())


def test_golden_files_exist():
    assert len(list(Path(GOLDEN).glob("*.eml"))) == 6


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("Hallo {{ contact.first_name }} van {{ sender.name }}", ("first_name",)),
        ("{{ contact['email'] }} {{ contact.name|upper }}", ("email", "name")),
        ("{% for k in contact %}{{ k }}{% endfor %}", None),
        ("{{ contact|tojson }}", None),
        ("{% set c = contact %}{{ c.name }}", None),
        ("{{ contact[field] }}", None),
        ("{{ contact.first_name }} {{ ['a', 'b']|random }}", None),
        ("{{ lipsum(1) }}", None),
        ("{% include 'other.html' %}", None),
    ],
)
def test_a_body_is_reused_only_when_the_template_reads_named_contact_fields(
    tmp_path, source, reads
):
    (tmp_path / "t.html").write_text(source)
    (tmp_path / "t.txt").write_text("{{ campaign.subject }}")
    (tmp_path / "other.html").write_text("{{ contact.email }}")
    assert contact_fields_read(environment(tmp_path), ("t.html", "t.txt")) == reads


def test_a_reused_body_is_what_a_render_gives(tmp_path):
    """Two recipients with the same first name share the render of a template that reads only
    the first name; one that reads the address gets its own."""
    for name, source in (("first", "Hi {{ contact.first_name }}"), ("mail", "{{ contact.email }}")):
        (tmp_path / f"{name}.html").write_text(f"<p>{source}</p>")
        (tmp_path / f"{name}.txt").write_text(source)
    shutil.copytree(ROOT / "templates" / "email" / "layout", tmp_path / "layout")
    a = recipient("en", name="An Peeters", email="an@example.be")
    b = recipient("en", name="An Maes", email="an.maes@example.be", delivery_id=2)
    for template, shared in (("first.html", True), ("mail.html", False)):
        made = composer(template, templates_dir=tmp_path)
        made.compose(a)
        second = made.compose(b)
        assert second.data == composer(template, templates_dir=tmp_path).compose(b).data
        assert len(made._rendered) == (1 if shared else 2)


# Recorded from the composer before SMTPUTF8 support: an ASCII recipient's To header.
ASCII_TO = {
    None: "an@example.be",
    "An Peeters": "An Peeters <an@example.be>",
    "Zoë Müller": "=?utf-8?b?Wm/DqyBNw7xsbGVy?= <an@example.be>",
    'O"Brien, Pat': '"O\\"Brien, Pat" <an@example.be>',
    "Dr. An (shop)": '"Dr. An (shop)" <an@example.be>',
}


def head_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.mark.parametrize("name", list(ASCII_TO))
def test_an_ascii_recipient_is_composed_as_before(name):
    """No SMTPUTF8 for an ASCII address, and the same bytes (the golden files hold the whole
    message; this the To header for names that need quoting or encoding)."""
    composed = composer().compose(recipient(name=name))
    assert not composed.smtputf8 and composed.recipient == "an@example.be"
    assert f"To: {ASCII_TO[name]}".encode() in head_lines(composed.data)
    assert composed.data.isascii()


def test_a_utf8_local_part_goes_raw_in_the_to_header_and_needs_smtputf8():
    """RFC 6531/6532: the address as UTF-8 in the envelope and in To (never an encoded-word),
    the display name still RFC 2047; the rest of the message, the envelope sender included
    (C29), is what an ASCII recipient of the same delivery gets."""
    plain = composer().compose(recipient(name="José Peeters", email="jose@example.be"))
    utf8 = composer().compose(recipient(name="José Peeters", email="josé@example.be"))
    assert utf8.smtputf8 and utf8.recipient == "josé@example.be"
    assert utf8.envelope_from == plain.envelope_from and utf8.envelope_from.isascii()
    to = "To: =?utf-8?q?Jos=C3=A9_Peeters?= <josé@example.be>".encode()
    assert to in head_lines(utf8.data)
    assert utf8.data.replace(to, b"") == plain.data.replace(
        b"To: =?utf-8?q?Jos=C3=A9_Peeters?= <jose@example.be>", b""
    )
    # As an RFC 6532 reader sees it (the bytes parser leaves UTF-8 in addresses undecoded).
    message = message_from_string(utf8.data.decode("utf-8"), policy=policy.default)
    (address,) = message["To"].addresses
    assert (address.display_name, address.addr_spec) == ("José Peeters", "josé@example.be")


def test_an_idn_domain_goes_as_a_labels_without_smtputf8():
    composed = composer().compose(recipient(name=None, email="jose@bücher.be"))
    assert not composed.smtputf8 and composed.recipient == "jose@xn--bcher-kva.be"
    assert b"To: jose@xn--bcher-kva.be" in head_lines(composed.data)
    assert composed.data.isascii()


@pytest.mark.parametrize(
    ("make", "algorithm"), [(rsa_key, "rsa-sha256"), (ed25519_key, "ed25519-sha256")]
)
def test_c25_dkim_verifies_with_a_utf8_to_header(make, algorithm):
    """The signature covers To as the raw UTF-8 bytes (relaxed canonicalisation works on
    bytes): it verifies, and fails once the address in it is changed."""
    private, record = make()
    signer = DkimSigner("s1", "ollekebolleke.be", private, algorithm=algorithm)
    data = composer(dkim=signer).compose(recipient(email="josé@bücher.be")).data
    assert "josé@bücher.be".encode() in data
    assert dkim.verify(data, dnsfunc=dns_for(record))
    forged = data.replace("josé@bücher.be".encode(), "josè@bücher.be".encode())
    assert not dkim.verify(forged, dnsfunc=dns_for(record))
