"""Why a campaign paused (C37, C39): each reason reads back as its kind and values, and the
console says every kind in each of its languages."""

from __future__ import annotations

from campaigns.sending import pauses
from mailer.web.console_env import pause_in_words
from mailer.web.console_text import CONSOLE


def test_c37_each_reason_reads_back_as_what_made_it():
    made = {
        pauses.by_marketer(): ("marketer", {}),
        pauses.relay_failing(3, "cannot connect to the relay: OSError"): (
            "relay",
            {"failures": "3", "detail": "cannot connect to the relay: OSError"},
        ),
        pauses.not_composable("cannot be composed: KeyError"): (
            "composition",
            {"detail": "cannot be composed: KeyError"},
        ),
        pauses.complaints(0.0045, 0.003): ("complaints", {"rate": "0.45%", "limit": "0.30%"}),
        pauses.domain_blocks("gmail.com", 0.07, 0.05): (
            "blocks",
            {"domain": "gmail.com", "rate": "7.0%", "limit": "5%"},
        ),
    }
    assert set(kind for kind, _ in made.values()) == set(pauses.ENGLISH)
    for text, (kind, values) in made.items():
        assert pauses.read(text) == pauses.PauseReason(kind, values)
    assert pauses.read("paused because of something else") is None


def test_a_reason_cut_at_the_column_still_reads_and_an_unknown_one_is_shown_as_it_is():
    long = pauses.relay_failing(5, "421 " + "x" * 300)
    assert len(long) == pauses.REASON_LENGTH
    assert pauses.read(long) is not None and pauses.read(long).kind == "relay"  # type: ignore[union-attr]
    assert pause_in_words("an older reason", CONSOLE["nl"]) == "an older reason"


def test_c39_the_console_says_every_reason_in_each_language():
    text = pauses.domain_blocks("gmail.com", 0.07, 0.05)
    for lang, words in CONSOLE.items():
        for kind in pauses.ENGLISH:
            assert f"pause_{kind}" in words, (lang, kind)
        assert "gmail.com" in pause_in_words(text, words) and "7.0%" in pause_in_words(text, words)
    assert pause_in_words(pauses.by_marketer(), CONSOLE["en"]) == "by a marketer"
