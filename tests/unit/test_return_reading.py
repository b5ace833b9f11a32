"""Reading reports in the shapes that are not the textbook one (C17-C20): the facts the
decision table gets from a DSN, an RFC 6533 one, a forwarded one, an ARF report, an
auto-reply, and what cannot be read."""

from __future__ import annotations

import pytest

from campaigns.returns.intake import verdict_of
from campaigns.returns.reading import read_report
from campaigns.returns.table import Verdict
from tests import reports


def test_c17_a_dsn_gives_its_fields_and_the_most_specific_code():
    raw = reports.dsn(status="5.0.0", diagnostic="550 5.1.1 <p0@example.be>: user unknown")
    reading = read_report(raw)
    assert (reading.form, reading.action, reading.status) == ("dsn", "failed", "5.1.1")
    assert reading.reported_recipient == "p0@example.be"
    assert verdict_of(reading).verdict == Verdict.HARD


def test_c17_an_rfc_6533_dsn_for_smtputf8_mail_is_read_as_a_dsn():
    raw = reports.dsn(status="5.1.1", diagnostic="550 5.1.1 user unknown").replace(
        b"message/delivery-status", b"message/global-delivery-status"
    )
    reading = read_report(raw)
    assert (reading.form, reading.status) == ("dsn", "5.1.1")


def test_c17_a_dsn_forwarded_inside_another_message_is_read_as_a_dsn():
    inner = reports.dsn(status="5.1.1", diagnostic="550 5.1.1 user unknown")
    raw = (
        b"From: someone@example.be\r\nSubject: FW: undeliverable\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="O"\r\n\r\n--O\r\nContent-Type: text/plain\r\n'
        b"\r\nsee attached\r\n--O\r\nContent-Type: message/rfc822\r\n\r\n"
        + inner
        + b"\r\n--O--\r\n"
    )
    assert read_report(raw).form == "dsn"
    assert verdict_of(read_report(raw)).verdict == Verdict.HARD


@pytest.mark.parametrize(
    ("action", "verdict"), [("delayed", Verdict.SOFT), ("delivered", Verdict.DELIVERED)]
)
def test_c18_the_action_decides_before_the_code(action, verdict):
    raw = reports.dsn(status="4.4.7" if action == "delayed" else "2.0.0", action=action)
    assert verdict_of(read_report(raw)).verdict == verdict


def test_c19_an_arf_report_gives_its_type_and_the_verp_address_first():
    raw = reports.arf(feedback_type="opt-out", original_mail_from="bounces+abc@ollekebolleke.be")
    reading = read_report(raw)
    assert (reading.form, reading.feedback_type) == ("arf", "opt-out")
    assert reading.references[0] == "bounces+abc@ollekebolleke.be"
    assert reading.reported_recipient == "p0@example.be"  # recorded, never used to find who


def test_c18_an_auto_reply_is_no_bounce_but_a_daemon_s_report_is_not_an_auto_reply():
    assert verdict_of(read_report(reports.auto_reply())).verdict == Verdict.AUTO_REPLY
    daemon = reports.qmail("Sorry, no mailbox here by that name. (#5.1.1)").replace(
        b"Subject: failure notice", b"Subject: failure notice\r\nAuto-Submitted: auto-replied"
    )
    assert verdict_of(read_report(daemon)).verdict == Verdict.HARD


def test_c17_our_own_mail_below_the_failure_is_not_read():
    """The returned message may say anything ('spam', 'blocked'): only the failure counts."""
    raw = reports.qmail("Sorry, no mailbox here by that name. (#5.1.1)")
    assert b"Spam?" in raw
    assert verdict_of(read_report(raw)).verdict == Verdict.HARD


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01\x02",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=X\r\n\r\n--X--",
        b"Content-Type: message/delivery-status\r\n\r\n\r\n",
        b"Subject: " + b"x" * 100_000 + b"\r\n\r\nbody",
        "Content-Type: text/plain; charset=x-unknown\r\n\r\nkein Zugang \xfc".encode("latin-1"),
    ],
    ids=["empty", "binary", "empty-report", "empty-status", "huge-header", "unknown-charset"],
)
def test_c20_what_cannot_be_read_goes_to_review_and_never_raises(raw):
    assert verdict_of(read_report(raw)).verdict == Verdict.REVIEW
