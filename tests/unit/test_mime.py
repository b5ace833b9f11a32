"""MIME building: quoted-printable encoded line by line (with a cache) equals encoding the
whole text at once."""

from __future__ import annotations

import binascii
from email.utils import formataddr

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailer.delivery import mime


def whole(text: str) -> bytes:
    """The reference: the whole text through b2a_qp at once, CRLF line ends."""
    normal = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return (
        binascii.b2a_qp(normal.encode("utf-8"), istext=True)
        .replace(b"\r\n", b"\n")
        .replace(b"\n", b"\r\n")
    )


# Characters b2a_qp treats specially (line ends, trailing blanks, '=', a lone '.', non-ASCII,
# controls) and plain ones, in lines around the 76-character limit.
LINES = st.text(alphabet=st.sampled_from("a .=\t\r\n\x00\x7fé€😀"), max_size=200)


@settings(max_examples=2000)
@given(LINES)
@example("")
@example("\n")
@example(".")
@example("a \n.\n")
@example("x" * 75 + "\n" + "y" * 76 + " \n" + "z" * 77 + "=\n" + "é" * 40)
@example("a\r\rb\r\n\n ")
def test_quoted_printable_line_by_line_equals_the_whole_text(text):
    mime._QP_LINES.clear()
    assert mime.quoted_printable(text) == whole(text)
    assert mime.quoted_printable(text) == whole(text)  # now from the cache


def test_the_line_cache_stays_bounded():
    mime._QP_LINES.clear()
    for i in range(mime._QP_LINES_MAX + 10):
        assert mime.quoted_printable(f"line {i}\nsame\n") == whole(f"line {i}\nsame\n")
    assert len(mime._QP_LINES) <= mime._QP_LINES_MAX


@given(
    st.text(alphabet=st.sampled_from("aZ .,;:@<>()[]\\\"'éß\t"), max_size=30),
    st.sampled_from(["an@example.be", "x.y+z@mail.example.be"]),
)
@example("An Peeters", "an@example.be")
@example("Peeters, An", "an@example.be")
@example('An "the tea" Peeters', "an@example.be")
def test_address_equals_formataddr(name, email):
    assert mime.address(name, email) == formataddr((name, email), charset="utf-8")


NAMES = st.text(alphabet=st.sampled_from("aZ .,;:@<>()[]\\\"'éß\t"), max_size=30)


@given(NAMES.filter(bool))  # no name: `address` writes the bare address
@example("Peeters, An")
@example('An "the tea" Peeters')
@example("a\\b")
def test_display_name_is_what_formataddr_writes(name):
    """For a UTF-8 address the name is written by `display_name` (formataddr refuses the
    address): held equal to formataddr's own name part, so only the addr-spec differs."""
    assert f"{mime.display_name(name)} <a@b.be>" == formataddr((name, "a@b.be"), charset="utf-8")


@given(NAMES.filter(bool))
def test_a_utf8_address_is_written_raw_and_only_the_name_is_encoded(name):
    """RFC 6532: an addr-spec is never an encoded-word; the display name still may be."""
    written = mime.address(name, "josé@bücher.be")
    assert written == f"{mime.display_name(name)} <josé@bücher.be>"
    assert mime.address(None, "josé@bücher.be") == "josé@bücher.be"


def test_a_utf8_address_cannot_inject_a_header():
    for email in ("josé@example.be\r\nBcc: x@example.be", "josé@example.be>, x@example.be"):
        with pytest.raises(mime.HeaderInjection):
            mime.address("José", email)


@pytest.mark.parametrize(
    ("email", "wire", "smtputf8"),
    [
        ("an@example.be", "an@example.be", False),  # as it is: the hot path
        ("jose@bücher.be", "jose@xn--bcher-kva.be", False),  # IDN domain: A-labels suffice
        ("jose@straße.de", "jose@xn--strae-oqa.de", False),  # IDNA 2008, not strasse.de
        ("jose@例子.测试", "jose@xn--fsqu00a.xn--0zwm56d", False),
        ("josé@example.be", "josé@example.be", True),  # a UTF-8 local part needs SMTPUTF8
        ("josé@bücher.be", "josé@bücher.be", True),  # ... and keeps its domain as given
        ("测试@例子.测试", "测试@例子.测试", True),
    ],
)
def test_mailbox_needs_smtputf8_only_for_a_local_part_that_is_not_ascii(email, wire, smtputf8):
    assert mime.mailbox(email) == (wire, smtputf8)


def test_mailbox_refuses_a_domain_idna_refuses():
    with pytest.raises(ValueError):
        mime.mailbox("jose@bü_cher.be")
