"""Service mails (mailer/delivery/notices.py): the double opt-in request (C5) and the
acknowledgement of an opt-out (C15), parsed as a mail client would. They identify the shop
truthfully (C29), carry no advertising, no List-Unsubscribe and no tracking, and bounce to the
plain bounce mailbox."""

from __future__ import annotations

import dataclasses
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from campaigns.clock import FixedClock
from mailer.delivery.compose import Composed
from mailer.delivery.notices import notice
from tests.conftest import NOW, business_config

SENDER = business_config().sender  # Olleke Bolleke BV, mail domain ollekebolleke.be
LINK = "https://mailer.example.test/confirm/0123456789abcdef"

SUBJECTS = {
    ("confirm", "nl"): "Bevestig je inschrijving",
    ("confirm", "fr"): "Confirmez votre inscription",
    ("confirm", "en"): "Please confirm your subscription",
    ("ack", "nl"): "Je bent afgemeld",
    ("ack", "fr"): "Votre désinscription est enregistrée",
    ("ack", "en"): "You are unsubscribed",
}
BODY_WORDS = {  # a phrase of the body, in the language the subject is in
    ("confirm", "nl"): "Bevestig je inschrijving met deze link",
    ("confirm", "fr"): "Confirmez votre inscription avec ce lien",
    ("confirm", "en"): "Confirm with this link",
    ("ack", "nl"): "geen reclame-e-mails meer",
    ("ack", "fr"): "ne vous enverra plus d'e-mails publicitaires",
    ("ack", "en"): "will not send you advertising email any more",
}
# (the contact's locale, the sender's default locale) -> the language of the mail
LOCALES = [
    ("nl", "nl", "nl"),
    ("fr", "nl", "fr"),
    ("en", "nl", "en"),
    ("de", "nl", "nl"),  # not a language we write: the sender's default
    (None, "nl", "nl"),
    ("de", "fr", "fr"),
    ("de", "xx", "en"),  # neither is: English
]


class Html(HTMLParser):
    """What a mail client would load or follow: links, images, anything with a src."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.sources: list[str] = []
        self.tags: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name == "href":
                self.hrefs.append(value or "")
            if name in ("src", "background", "srcset"):
                self.sources.append(value or "")


def make(kind: str, locale: str | None = "nl", sender=SENDER, **kw) -> Composed:  # type: ignore[no-untyped-def]
    kw.setdefault("to_email", "an@example.be")
    kw.setdefault("to_name", "An Peeters")
    if kind == "confirm":
        kw.setdefault("link", LINK)
    return notice(kind, locale=locale, sender=sender, clock=FixedClock(NOW), **kw)


def parsed(composed: Composed) -> EmailMessage:
    return message_from_bytes(composed.data, policy=policy.default)  # type: ignore[return-value]


def parts(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"  # text first (RFC 2046 order)
    assert html.get_content_type() == "text/html"
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"
    return text.get_content(), html.get_content()


@pytest.mark.parametrize("kind", ["confirm", "ack"])
@pytest.mark.parametrize(("locale", "default", "language"), LOCALES)
def test_c5_c15_notice_headers_in_the_contacts_language(kind, locale, default, language):
    sender = dataclasses.replace(SENDER, default_locale=default)
    composed = make(kind, locale, sender=sender)
    message = parsed(composed)
    assert message["From"].addresses[0].display_name == "Olleke Bolleke"
    assert message["From"].addresses[0].addr_spec == "nieuws@ollekebolleke.be"
    assert str(message["Reply-To"]) == "hallo@ollekebolleke.be"  # the shop's contact (C29)
    assert message["To"].addresses[0].display_name == "An Peeters"
    assert message["To"].addresses[0].addr_spec == "an@example.be"
    assert str(message["Subject"]) == SUBJECTS[kind, language]
    assert message["Date"].datetime == NOW
    assert str(message["Auto-Submitted"]) == "auto-generated"
    assert re.fullmatch(r"<[0-9a-f]{32}@ollekebolleke\.be>", str(message["Message-ID"]))
    assert str(message["Message-ID"]) == composed.message_id
    text, html = parts(message)
    assert BODY_WORDS[kind, language] in text
    assert BODY_WORDS[kind, language].replace("'", "&#x27;") in html


@pytest.mark.parametrize("kind", ["confirm", "ack"])
def test_notice_envelope_goes_to_the_plain_bounce_mailbox(kind):
    composed = make(kind, to_email="an@example.be")
    assert composed.envelope_from == "bounces@ollekebolleke.be"  # maps to no delivery
    assert composed.recipient == "an@example.be"


@pytest.mark.parametrize("kind", ["confirm", "ack"])
@pytest.mark.parametrize("locale", ["nl", "fr", "en"])
def test_notice_has_crlf_line_ends_only(kind, locale):
    data = make(kind, locale, to_name="Émile Dupont").data
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))  # RFC 5322 line limit


@pytest.mark.parametrize("locale", ["nl", "fr", "en", "de"])
def test_c5_confirm_link_is_in_the_text_and_the_html_part(locale):
    text, html = parts(parsed(make("confirm", locale)))
    assert LINK in text.splitlines()  # on a line of its own: clickable in any client
    assert f'<a href="{LINK}">{LINK}</a>' in html
    assert Html(html).hrefs == [LINK]


def test_c5_confirm_link_with_a_query_is_escaped_in_the_html_part():
    link = "https://mailer.example.test/confirm/abc?x=1&y=<2>"
    text, html = parts(parsed(make("confirm", link=link)))
    assert link in text.splitlines()
    assert "&amp;y=&lt;2&gt;" in html and "<2>" not in html
    assert Html(html).hrefs == [link]  # what a client follows is the link itself


def test_notice_escapes_a_shop_name_with_markup_characters():
    sender = dataclasses.replace(
        SENDER, from_name="Olleke & <Bolleke>", legal_name="Olleke & <Bolleke> BV"
    )
    for kind in ("confirm", "ack"):
        message = parsed(make(kind, sender=sender))
        assert message["From"].addresses[0].display_name == "Olleke & <Bolleke>"
        assert message["From"].addresses[0].addr_spec == "nieuws@ollekebolleke.be"
        text, html = parts(message)
        assert "Olleke & <Bolleke>" in text  # plain text is not HTML: as it is
        assert "Olleke &amp; &lt;Bolleke&gt;" in html
        assert "<Bolleke>" not in html and "& <" not in html
        assert Html(html).tags <= {"html", "head", "meta", "title", "body", "p", "a", "br"}


@pytest.mark.parametrize("kind", ["confirm", "ack"])
@pytest.mark.parametrize("locale", ["nl", "fr", "en", None])
def test_c29_notice_footer_states_the_sender_identity(kind, locale):
    text, html = parts(parsed(make(kind, locale)))
    for part in (text, html):
        for value in (
            SENDER.legal_name,
            SENDER.address,
            SENDER.enterprise_number,
            SENDER.contact_email,
        ):
            assert value in part
    body, footer = text.split("\r\n--\r\n")  # the identity after the signature line
    assert SENDER.legal_name in footer and SENDER.contact_email in footer
    assert SENDER.legal_name not in body


@pytest.mark.parametrize("kind", ["confirm", "ack"])
@pytest.mark.parametrize("locale", ["nl", "fr", "en"])
def test_c5_c15_notice_has_no_list_unsubscribe_no_advertising_and_no_tracking(kind, locale):
    message = parsed(make(kind, locale))
    assert not [name for name in message if name.lower().startswith("list-")]
    assert "Precedence" not in message
    text, html = parts(message)
    page = Html(html)
    assert page.sources == []  # no pixel, no remote image
    assert "img" not in page.tags
    assert page.hrefs == ([LINK] if kind == "confirm" else [])  # no rewritten links
    assert re.findall(r"https?://\S+", text) == ([LINK] if kind == "confirm" else [])
    for label in ("Reclame", "Publicité", "Advertisement"):  # not a marketing mail
        assert label not in text


def test_notice_to_without_a_name_is_the_bare_address():
    message = parsed(make("ack", to_name=None))
    assert str(message["To"]) == "an@example.be"


def test_notice_to_a_non_ascii_name_survives_encoding():
    message = parsed(make("confirm", "fr", to_name="Émile Dupont"))
    assert message["To"].addresses[0].display_name == "Émile Dupont"
    assert message.as_bytes().isascii()  # RFC 2047 headers, quoted-printable bodies


def test_two_notices_have_different_message_ids():
    first, second = make("ack"), make("ack")
    assert first.message_id != second.message_id


@pytest.mark.parametrize("kind", ["confirm", "ack"])
def test_a_notice_to_a_utf8_address_carries_it_raw_and_needs_smtputf8(kind):
    """As the campaign composer does: the addr-spec raw in To (RFC 6532), the name encoded."""
    composed = make(kind, to_email="josé@bücher.be", to_name="José")
    assert composed.smtputf8 and composed.recipient == "josé@bücher.be"
    assert "\r\nTo: =?utf-8?b?Sm9zw6k=?= <josé@bücher.be>\r\n".encode() in composed.data


@pytest.mark.parametrize("kind", ["confirm", "ack"])
def test_a_notice_to_an_idn_domain_goes_as_a_labels(kind):
    composed = make(kind, to_email="jose@bücher.be", to_name=None)
    assert not composed.smtputf8 and composed.recipient == "jose@xn--bcher-kva.be"
    assert composed.data.isascii() and b"\r\nTo: jose@xn--bcher-kva.be\r\n" in composed.data
