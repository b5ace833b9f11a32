"""Consent evidence rules (C2, C4, C5) and address normalisation, without a database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaigns.addresses import normalise_address
from campaigns.clock import add_months, months_before
from campaigns.evidence.consent import consent_row, refusal_reason
from campaigns.evidence.inputs import ConsentEvidenceIn
from tests import factories

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def evidence(**overrides: object) -> ConsentEvidenceIn:
    return ConsentEvidenceIn.model_validate(factories.consent(**overrides))


def test_c2_c4_complete_positive_consent_counts():
    assert refusal_reason(evidence(), NOW) is None


def test_c2_prechecked_box_is_refused():
    assert refusal_reason(evidence(checkbox_prechecked=True), NOW) == "prechecked_box"


def test_withdrawal_always_counts_even_without_evidence():
    withdrawal = ConsentEvidenceIn(purpose="newsletter", granted=False)
    assert refusal_reason(withdrawal, NOW) is None
    row = consent_row(withdrawal, contact_id="c", now=NOW)
    assert row["valid"] is True and row["captured_at"] == NOW


def test_identical_events_share_a_fingerprint_and_different_ones_do_not():
    a = consent_row(evidence(), contact_id="c", now=NOW)
    b = consent_row(evidence(), contact_id="c", now=datetime(2027, 1, 1, tzinfo=UTC))
    c = consent_row(evidence(wording_version="2026-02"), contact_id="c", now=NOW)
    assert a["fingerprint"] == b["fingerprint"] != c["fingerprint"]


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("An.Peeters@Example.BE", "an.peeters@example.be"),
        ("  an@example.be ", "an@example.be"),
        ("jan@bücher.example", "jan@bücher.example"),
    ],
)
def test_addresses_are_normalised(raw, normal):
    assert normalise_address(raw) == normal


@pytest.mark.parametrize("raw", ["plain", "a@b", "a@@example.be", "a@example.be\nBcc: x", ""])
def test_bad_addresses_are_refused(raw):
    with pytest.raises(ValueError, match=r"."):
        normalise_address(raw)


def test_calendar_months_clamp_the_day():
    assert months_before(datetime(2026, 3, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2024, 2, 29, tzinfo=UTC), 24) == datetime(2026, 2, 28, tzinfo=UTC)
