"""Building RFC 5322 / MIME messages as bytes, fast: multipart/alternative, UTF-8,
quoted-printable bodies, RFC 2047 headers. Header values are refused if they could inject a
header (CR or LF)."""

from __future__ import annotations

import binascii
from email.header import Header
from email.utils import formataddr


class HeaderInjection(ValueError):
    pass


def header_text(value: str) -> str:
    """A header value, RFC 2047-encoded when it is not plain ASCII."""
    if "\r" in value or "\n" in value:
        raise HeaderInjection("a header value cannot contain a line break")
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=998).encode(linesep="\r\n")


def address(name: str | None, email: str) -> str:
    if any(ch in email for ch in "\r\n<>,") or (name and ("\r" in name or "\n" in name)):
        raise HeaderInjection("an address cannot contain line breaks or delimiters")
    if not name:
        return email
    return formataddr((name, email), charset="utf-8")


def quoted_printable(text: str) -> bytes:
    """UTF-8 text with CRLF line ends, quoted-printable (lines stay under 76 characters)."""
    normal = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return (
        binascii.b2a_qp(normal.encode("utf-8"), istext=True)
        .replace(b"\r\n", b"\n")
        .replace(b"\n", b"\r\n")
    )


def alternative(headers: list[tuple[str, str]], text: str, html: str, boundary: str) -> bytes:
    """A complete multipart/alternative message: text first, then HTML (RFC 2046 order)."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head += "MIME-Version: 1.0\r\n"
    head += f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    parts = []
    for subtype, body in (("plain", text), ("html", html)):
        parts.append(
            f"--{boundary}\r\n"
            f"Content-Type: text/{subtype}; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode()
            + quoted_printable(body)
            + b"\r\n"
        )
    return head.encode() + b"".join(parts) + f"--{boundary}--\r\n".encode()
