"""Reports shaped as the RFCs and real MTAs shape them, for the return channel's tests."""

from __future__ import annotations

DOMAIN = "ollekebolleke.be"


def returned_headers(message_id: str, verp: str, to: str = "p0@example.be") -> str:
    return (
        f"Return-Path: <{verp}>\r\n"
        f"From: Olleke Bolleke <nieuws@{DOMAIN}>\r\n"
        f"To: {to}\r\n"
        "Subject: Nieuws\r\n"
        f"Message-ID: {message_id}\r\n"
    )


def dsn(
    *,
    status: str,
    action: str = "failed",
    diagnostic: str = "",
    recipient: str = "p0@example.be",
    message_id: str = "<x@example.be>",
    verp: str = f"bounces@{DOMAIN}",
    human: str = "Your message could not be delivered.",
) -> bytes:
    """RFC 3464: multipart/report with a message/delivery-status part."""
    diagnostic_line = f"Diagnostic-Code: smtp; {diagnostic}\r\n" if diagnostic else ""
    return (
        f"From: MAILER-DAEMON@mx.example.be\r\n"
        f"To: {verp}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\n"
        "Content-Type: text/plain\r\n\r\n"
        f"{human}\r\n"
        "\r\n--B\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.be\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"{diagnostic_line}"
        "\r\n--B\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"{returned_headers(message_id, verp, recipient)}"
        "\r\n--B--\r\n"
    ).encode()


def arf(
    *,
    feedback_type: str = "abuse",
    original_mail_from: str | None = None,
    message_id: str = "<x@example.be>",
    verp: str = f"bounces@{DOMAIN}",
    recipient: str = "p0@example.be",
) -> bytes:
    """RFC 5965: multipart/report with a message/feedback-report part and the returned
    message's headers."""
    mail_from = f"Original-Mail-From: <{original_mail_from}>\r\n" if original_mail_from else ""
    return (
        "From: feedback@fbl.example.net\r\n"
        f"To: bounces@{DOMAIN}\r\n"
        "Subject: FW: Nieuws\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        "\r\n--F\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "This is an email abuse report for an email message received from IP 192.0.2.1\r\n"
        "\r\n--F\r\n"
        "Content-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\n"
        "User-Agent: SomeGenerator/1.0\r\n"
        "Version: 1\r\n"
        f"{mail_from}"
        f"Original-Rcpt-To: <{recipient}>\r\n"
        "Arrival-Date: Thu, 8 Mar 2026 14:00:00 EDT\r\n"
        "\r\n--F\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"{returned_headers(message_id, verp, recipient)}"
        "\r\n--F--\r\n"
    ).encode()


def auto_reply() -> bytes:
    return (
        "From: Piet <p0@example.be>\r\n"
        f"To: bounces@{DOMAIN}\r\n"
        "Subject: Afwezig: Nieuws\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "\r\n"
        "Ik ben afwezig tot maandag.\r\n"
    ).encode()


def qmail(text: str) -> bytes:
    """An MTA's own prose with the returned message below it, no DSN part."""
    return (
        "From: MAILER-DAEMON@mx.example.be\r\n"
        "Subject: failure notice\r\n"
        "\r\n"
        "Hi. This is the qmail-send program at mx.example.be.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        f"<p0@example.be>:\r\n{text}\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n\r\n"
        "Subject: Nieuws\r\n\r\nSpam? No: our newsletter, blocked by nobody.\r\n"
    ).encode()
