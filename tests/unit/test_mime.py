"""MIME building: quoted-printable encoded line by line (with a cache) equals encoding the
whole text at once."""

from __future__ import annotations

import binascii
from email.utils import formataddr

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
