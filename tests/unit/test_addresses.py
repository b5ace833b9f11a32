"""The everyday-address fast path agrees with email-validator (property test)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.addresses import _EVERYDAY, everyday_address, normalise_address


def validator_says(address: str) -> str | None:
    try:
        return validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


@settings(max_examples=1000, deadline=None)
@given(st.from_regex(_EVERYDAY, fullmatch=True))
def test_fast_path_accepts_only_what_the_validator_accepts_the_same_way(address):
    fast = everyday_address(address)
    if fast is not None:
        assert validator_says(address) == fast


_ATOM = st.text(alphabet="abcXYZ09._+-@!#é ", min_size=1, max_size=12)


@settings(max_examples=1000, deadline=None)
@given(st.builds(lambda a, b: f"{a}@{b}", _ATOM, _ATOM))
def test_normalise_agrees_with_the_validator_on_arbitrary_input(address):
    expected = validator_says(address.strip())
    try:
        got = normalise_address(address)
    except ValueError:
        got = None
    assert got == expected


def test_special_use_and_idna_domains_go_to_the_validator():
    assert everyday_address("a@mail.test") is None
    assert everyday_address("a@xn--bcher-kva.example") is None
    assert normalise_address("a@xn--bcher-kva.example") == "a@bücher.example"
