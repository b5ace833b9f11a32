"""Properties of the composer over any input (bad input gets a clear error; RULES C23, C29,
C30): whatever the contact's name, the campaign's subject, the locale or the template's text,
the result is a message that parses, whose headers are the composer's own (no header injected
through a value), with CRLF line ends only and no line over 998 octets (RFC 5322 2.1.1); or a
clear error, never a broken message."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.errors import InvalidInput
from mailer.delivery.compose import CompositionError
from mailer.delivery.mime import HeaderInjection
from tests.unit.test_compose import TEMPLATES, composer, recipient

HEADERS = {
    "From",
    "Reply-To",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "MIME-Version",
    "Content-Type",
    "DKIM-Signature",
}
# Any text, with what injects headers or breaks lines well represented.
nasty = st.lists(
    st.one_of(
        st.sampled_from(["\r", "\n", "\r\n", ":", " ", "\t", "\x00", "=?", "?=", "é", "€", "😀"]),
        st.text(st.characters(codec="utf-8"), max_size=40),
        st.just("x" * 1000),
    ),
    max_size=30,
).map("".join)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_well_formed(data: bytes) -> None:
    assert b"\r\n" in data
    assert not re.search(rb"(?<!\r)\n|\r(?!\n)", data), "a bare CR or LF"
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    head = data.split(b"\r\n\r\n", 1)[0]
    names = {m.group(1).decode() for m in re.finditer(rb"^([^\s:]+):", head, re.MULTILINE)}
    assert names <= HEADERS, names - HEADERS
    message = message_from_bytes(data, policy=policy.default)
    assert message.get_body(("html",)) is not None
    assert message.get_body(("plain",)) is not None
    assert not message.defects


@SETTINGS
@given(name=nasty, locale=st.one_of(st.none(), st.sampled_from(["nl", "fr", "en"]), nasty))
def test_bad_input_any_name_and_locale_give_a_well_formed_message(name, locale):
    try:
        data = composer().compose(recipient(locale=locale, name=name or None)).data
    except (CompositionError, HeaderInjection):
        return  # a clear refusal
    assert_well_formed(data)


@SETTINGS
@given(subject=nasty)
def test_bad_input_any_subject_gives_a_well_formed_message_or_a_clear_error(subject):
    try:
        data = composer(subject=subject).compose(recipient()).data
    except (CompositionError, HeaderInjection, InvalidInput):
        return
    assert_well_formed(data)


@SETTINGS
@given(body=nasty)
def test_bad_input_any_template_text_gives_a_well_formed_message_or_a_clear_error(
    tmp_path_factory, body
):
    folder = tmp_path_factory.mktemp("t")
    (folder / "layout").symlink_to(TEMPLATES / "layout")
    (folder / "t.html").write_text(body, encoding="utf-8", errors="surrogatepass")
    (folder / "t.txt").write_text(body, encoding="utf-8", errors="surrogatepass")
    try:
        made = composer("t.html", templates_dir=folder)
        made.content.check()
        data = made.compose(recipient()).data
    except (CompositionError, HeaderInjection, InvalidInput):
        return
    assert_well_formed(data)
