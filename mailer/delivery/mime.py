"""Building RFC 5322 / MIME messages as bytes, fast: multipart/alternative, UTF-8,
quoted-printable bodies, RFC 2047 headers. Header values are refused if they could inject a
header (CR or LF).

Addresses: an ASCII address is written as it is. An internationalised one goes out in the
form that needs the least from the relay (`mailbox`): a domain that is not ASCII as A-labels
(IDNA 2008), which any relay takes; a local part that is not ASCII only as UTF-8, which needs
SMTPUTF8 (RFC 6531) and puts the address raw in the To header (RFC 6532: an addr-spec is
never RFC 2047-encoded; the display name still is)."""

from __future__ import annotations

import base64
import binascii
import re
from email.charset import Charset
from email.header import Header
from email.utils import formataddr

from campaigns.addresses import a_labels


class HeaderInjection(ValueError):
    pass


def header_text(value: str) -> str:
    """A header value, RFC 2047-encoded when it is not plain ASCII."""
    if "\r" in value or "\n" in value:
        raise HeaderInjection("a header value cannot contain a line break")
    if len(value) > LONG:
        return _folded(value)
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=998).encode(linesep="\r\n")


# A value longer than this may not fit a line (998 octets, RFC 5322 2.1.1) as it is, when it
# has no space to fold at: it goes as RFC 2047 encoded-words, which can be folded anywhere.
LONG = 400


def _folded(value: str) -> str:
    return Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


_NOT_IN_EMAIL = re.compile("[\r\n<>,]")
_UTF8 = Charset("utf-8")  # what formataddr builds from charset="utf-8" on every call
# formataddr quotes a name with one of these (email.utils.specialsre); without, it is as is.
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


# formataddr escapes these inside a quoted name (email.utils.escapesre).
_ESCAPES = re.compile(r'[\\"]')


def address(name: str | None, email: str) -> str:
    """A To/From header value. `email` as `mailbox` gives it: when it is not ASCII it is
    written raw (RFC 6532), and only the display name is encoded."""
    if _NOT_IN_EMAIL.search(email) or (name and ("\r" in name or "\n" in name)):
        raise HeaderInjection("an address cannot contain line breaks or delimiters")
    if not name:
        return email
    if len(name) > LONG:
        return f"{_folded(name)} <{email}>"
    if email.isascii():
        if name.isascii() and not _SPECIALS.search(name):
            return f"{name} <{email}>"  # what formataddr returns for a plain ASCII name
        return formataddr((name, email), charset=_UTF8)
    return f"{display_name(name)} <{email}>"  # formataddr refuses an address not in ASCII


def display_name(name: str) -> str:
    """The display name as formataddr writes it: an RFC 2047 encoded-word when it is not
    ASCII, quoted (with backslash escapes) when it holds specials, else as it is."""
    if not name.isascii():
        return _UTF8.header_encode(name)
    if _SPECIALS.search(name):
        escaped = _ESCAPES.sub(r"\\\g<0>", name)
        return f'"{escaped}"'
    return name


def mailbox(email: str) -> tuple[str, bool]:
    """The address as the envelope and the To header carry it, and whether that needs
    SMTPUTF8 (RFC 6531). ASCII: as it is. A local part in ASCII at a domain that is not
    (`jose@bücher.be`): the domain as A-labels (`jose@xn--bcher-kva.be`), no SMTPUTF8 needed.
    A local part that is not ASCII (`josé@example.be`): as it is, in UTF-8, with SMTPUTF8; its
    domain stays as the contact gave it (U-labels are fine under SMTPUTF8).

    Raises idna.IDNAError (a ValueError) for a domain IDNA 2008 refuses."""
    if email.isascii():
        return email, False
    local, at, domain = email.rpartition("@")
    if not local.isascii():
        return email, True
    return f"{local}{at}{a_labels(domain)}", False


def quoted_printable(text: str) -> bytes:
    """UTF-8 text with CRLF line ends, quoted-printable (lines stay under 76 characters).

    Each line is encoded on its own and remembered: b2a_qp encodes a line the same whatever
    comes before or after it (its state restarts at each line end; only the very end of the
    text is special, and the last line is encoded as the end of a text). Most lines of a
    campaign's messages (layout, body, footer) repeat from one message to the next, so this
    saves most of the encoding; a test checks the result against encoding the whole text."""
    if "\r" in text:  # rare: the templates' line ends are LF
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    last = lines.pop()
    cached = _QP_LINES.get
    out = [cached(line) or _qp_line(line) for line in lines]  # encoded, never empty
    if last:
        out.append(_qp(last))
    return b"".join(out)


def _qp_line(line: str) -> bytes:
    encoded = _qp(line + "\r\n")
    if len(_QP_LINES) >= _QP_LINES_MAX:  # bounded: lines unique to one message pass through
        _QP_LINES.clear()
    _QP_LINES[line] = encoded
    return encoded


_QP_LINES: dict[str, bytes] = {}
_QP_LINES_MAX = 4096


def _qp(text: str) -> bytes:
    # b2a_qp ends soft line breaks with CRLF only if the text's first line end is CRLF: a
    # text without a line end gets LF ones, hence the normalisation.
    return (
        binascii.b2a_qp(text.encode("utf-8"), istext=True)
        .replace(b"\r\n", b"\n")
        .replace(b"\n", b"\r\n")
    )


def alternative(headers: list[tuple[str, str]], text: str, html: str, boundary: str) -> bytes:
    """A complete multipart/alternative message: text first, then HTML (RFC 2046 order)."""
    head = "".join([f"{name}: {value}\r\n" for name, value in headers])
    head += "MIME-Version: 1.0\r\n"
    head += f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    parts = [head.encode()]
    for subtype, body in (("plain", text), ("html", html)):
        parts += (
            f"--{boundary}\r\n"
            f"Content-Type: text/{subtype}; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode(),
            quoted_printable(body),
            b"\r\n",
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def with_attachment(
    headers: list[tuple[str, str]],
    text: str,
    html: str,
    attachment: tuple[str, str, bytes],
    boundary: str,
) -> bytes:
    """A multipart/mixed message: the text and HTML alternative, then one attachment
    (`(filename, content type, bytes)`, base64 in lines of 76)."""
    filename, content_type, payload = attachment
    head = "".join([f"{name}: {value}\r\n" for name, value in headers])
    head += "MIME-Version: 1.0\r\n"
    head += f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
    inner = alternative([], text, html, f"{boundary}.alt").split(b"MIME-Version: 1.0\r\n", 1)[1]
    encoded = base64.b64encode(payload).decode("ascii")
    lines = "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    return b"".join(
        [
            head.encode(),
            f"--{boundary}\r\n".encode(),
            inner,
            f"\r\n--{boundary}\r\n"
            f'Content-Type: {content_type}; name="{filename}"\r\n'
            f'Content-Disposition: attachment; filename="{filename}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n".encode(),
            lines.encode("ascii"),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
