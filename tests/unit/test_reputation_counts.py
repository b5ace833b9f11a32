"""What an SMTP answer counts for a run's reputation, per receiving domain (RULES C37)."""

from __future__ import annotations

from campaigns.returns.reputation import domain_of, smtp_tally
from campaigns.sending.ledger import SmtpOutcome
from mailer.delivery.mime import mailbox


def test_c37_a_domain_counts_once_however_the_address_writes_it():
    assert domain_of("Jan@Example.BE") == "example.be"
    # The contact's own spelling (a report, recovery) and what RCPT TO carries (A-labels).
    assert domain_of("jose@bücher.be") == domain_of("jose@xn--bcher-kva.be") == "xn--bcher-kva.be"
    assert domain_of("josé@Bücher.be") == "xn--bcher-kva.be"
    for email in ("jose@bücher.be", "josé@bücher.be"):  # RCPT TO's form, with SMTPUTF8 or not
        assert domain_of(mailbox(email)[0]) == domain_of(email)
    assert domain_of("x@a_b.example") == "a_b.example"  # ASCII: as it is, lower case
    assert domain_of("x@\u00e4\u200d.example") == "\u00e4\u200d.example"  # IDNA refuses: as written


def test_c37_sent_and_refused_messages_count_retries_and_unknown_do_not():
    tally = smtp_tally(
        [
            ("a@example.be", SmtpOutcome(1, "sent")),
            ("b@example.be", SmtpOutcome(2, "permanent", "550 5.1.1", hard_bounce=True)),
            ("c@example.be", SmtpOutcome(3, "permanent", "550 5.7.1", block=True)),
            ("d@example.be", SmtpOutcome(4, "permanent", "554 5.6.0")),
            ("e@example.be", SmtpOutcome(5, "temporary", "450 4.2.0")),
            ("f@example.be", SmtpOutcome(6, "unknown", "lost after the dot")),
            ("g@bücher.be", SmtpOutcome(7, "sent")),
        ]
    )
    assert {domain: +counts for domain, counts in tally.by_domain.items()} == {
        "example.be": {"messages": 4, "delivered": 1, "hard_bounces": 1, "blocks": 1},
        "xn--bcher-kva.be": {"messages": 1, "delivered": 1},
    }
