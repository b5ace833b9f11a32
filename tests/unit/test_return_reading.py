"""Reading reports in the shapes that are not the textbook one (C17-C20): the facts the
decision table gets from a DSN, an RFC 6533 one, a forwarded one, an ARF report, an
auto-reply, and what cannot be read."""

from __future__ import annotations

import email.feedparser
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.returns import reading
from campaigns.returns.intake import mask_addresses
from campaigns.returns.judging import verdict_of
from campaigns.returns.reading import read_report
from campaigns.returns.table import Decision, Verdict, decide, status_in
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


@pytest.mark.parametrize(
    "reply",
    [
        "550 Sender not listed in whitelist",
        "554 Your IP address is not listed in our allowed senders",
        "554 Transaction failed: PTR record does not exist for your IP",
        "550 Helo command rejected: Host not found",
        "550 Message refused: your server is not known to us",
        "550 5.4.5 Daily user sending quota exceeded.",
    ],
)
def test_c17_refusals_of_our_sending_are_blocks_never_hard_bounces(reply):
    """At send time such a reply comes for every recipient at the domain: a hard bounce would
    suppress them all for good."""
    assert decide(status_in(reply), reply).verdict == Verdict.BLOCK


def test_c18_mailbox_full_with_5_2_2_is_soft_whatever_else_it_says():
    reply = "552 5.2.2 <x@example.be>: user is over the message quota"
    assert decide(status_in(reply), reply).verdict == Verdict.SOFT


def test_c18_a_delay_warning_is_soft_even_with_a_policy_code():
    raw = reports.dsn(status="4.7.0", action="delayed", diagnostic="421 4.7.0 rate limited")
    assert verdict_of(read_report(raw)).verdict == Verdict.SOFT


@pytest.mark.parametrize(
    "text",
    [
        "That discount code does not exist any more.",
        "Your e-mail address is not known in our customer system.",
        "Die winkel bestaat niet meer.",
    ],
)
def test_c20_a_reply_that_is_not_a_report_is_for_a_person(text):
    """Sent by a person or a ticket system to the Return-Path, from an address, without a
    bounce's marks: never read as a bounce."""
    raw = f"From: klant@example.be\r\nSubject: Re: Nieuws\r\n\r\n{text}\r\n".encode()
    assert verdict_of(read_report(raw), null_sender=False) == Decision(
        Verdict.REVIEW, "a reply, not a delivery report"
    )
    # the same words with the null sender bounces come with are read as a bounce's
    assert verdict_of(read_report(raw), null_sender=True).rule != "a reply, not a delivery report"


def test_c20_a_huge_report_is_read_in_linear_time():
    """A 250 KB diagnostic without a space (reports are anyone's): a pattern like \\S+@\\S+
    took minutes on it; the bound here is two orders of magnitude above what it takes."""
    raw = reports.dsn(status="5.0.0", diagnostic="550 " + "a@b" * 80_000)
    started = time.monotonic()
    reading = read_report(raw)
    decision = verdict_of(reading)
    mask_addresses(reading.diagnostic)
    assert time.monotonic() - started < 5
    assert decision.verdict == Verdict.REVIEW


# ---- the boundary matcher that spares the parser a regex compilation per boundary ----------

_SEPARATOR = st.text(
    alphabet=st.sampled_from("abcXYZ019'()+_,-./:=? \\[]*^$|{}"), min_size=1, max_size=20
)
_AFTER = st.sampled_from(["", "--", "-", "--  ", " \t", "x", "\r\n", "\n", "\r", "--\r\n", " \n"])


def _stdlib_pattern(separator: str) -> str:
    """The pattern email.feedparser compiles for a boundary (Python 3.11, feedparser.py)."""
    return (
        "(?P<sep>" + re.escape(separator) + r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
    )


def test_the_parser_of_this_python_takes_the_matcher_for_each_boundary(monkeypatch):
    made: list[str] = []

    class Counted(reading._BoundaryMatcher):
        def __init__(self, separator: str) -> None:
            made.append(separator)
            super().__init__(separator)

    monkeypatch.setattr(reading, "_BoundaryMatcher", Counted)
    parsed = read_report(reports.dsn(status="5.1.1", diagnostic="550 5.1.1 user unknown"))
    assert parsed.status == "5.1.1"
    assert made and all(separator.startswith("--") for separator in made)
    assert email.feedparser.re.compile("a+").match("aa")  # any other pattern: compiled


@given(separator=_SEPARATOR, before=st.sampled_from(["", " ", "x"]), after=_AFTER, extra=_AFTER)
def test_the_boundary_matcher_matches_as_the_compiled_pattern_does(separator, before, after, extra):
    compiled = re.compile(_stdlib_pattern(separator))
    matcher = email.feedparser.re.compile(_stdlib_pattern(separator))
    line = before + separator + after + extra
    expected, got = compiled.match(line), matcher.match(line)
    assert bool(expected) == bool(got), line
    if expected is not None:
        assert (got.group("end"), got.group("linesep"), got.end()) == (
            expected.group("end"),
            expected.group("linesep"),
            expected.end(),
        )
