"""Why a campaign paused (C37, C39): the API's English text as it always was, each reason read
back as its kind and values, and the console saying every kind in each of its languages."""

from __future__ import annotations

import string

import pytest

from campaigns.sending import pauses
from mailer.web.console_env import pause_in_words
from mailer.web.console_text import CONSOLE

MADE = {  # the stored text (the API's), pinned: a template edit would change the API
    pauses.by_marketer(): ("paused by a marketer", "marketer", {}),
    pauses.relay_failing(3, "cannot connect to the relay: OSError"): (
        "paused after 3 relay failures in a row: cannot connect to the relay: OSError",
        "relay",
        {"failures": "3", "detail": "cannot connect to the relay: OSError"},
    ),
    pauses.not_composable("cannot be composed: KeyError"): (
        "paused: messages cannot be composed (cannot be composed: KeyError)",
        "composition",
        {"detail": "cannot be composed: KeyError"},
    ),
    pauses.complaints(0.0045, 0.003): (
        "paused: complaints at 0.45% of delivered mail (limit 0.30%)",
        "complaints",
        {"rate": "0.45%", "limit": "0.30%"},
    ),
    pauses.domain_blocks("gmail.com", 0.07, 0.05): (
        "paused: gmail.com refused 7.0% of its messages as sender-level blocks (limit 5%)",
        "blocks",
        {"domain": "gmail.com", "rate": "7.0%", "limit": "5%"},
    ),
}


def test_c37_each_reason_is_the_text_it_was_and_reads_back_as_what_made_it():
    assert {kind for _, kind, _ in MADE.values()} == set(pauses.ENGLISH)
    for made, (text, kind, values) in MADE.items():
        assert made == text
        assert pauses.read(text) == pauses.PauseReason(kind, values)
    assert pauses.read("paused because of something else") is None


def test_a_reason_cut_at_the_column_reads_while_its_end_is_there_else_shows_as_stored():
    relay = pauses.relay_failing(5, "421 " + "x" * 300)
    assert len(relay) == pauses.REASON_LENGTH
    assert pauses.read(relay) == pauses.PauseReason(
        "relay", {"failures": "5", "detail": relay.split(": ", 1)[1]}
    )
    blocks = pauses.domain_blocks("a" * 150 + ".example", 0.07, 0.05)  # its "(limit 5%)" cut
    assert pauses.read(blocks) is None
    assert pause_in_words(blocks, CONSOLE["nl"]) == blocks
    assert pause_in_words("an older reason", CONSOLE["fr"]) == "an older reason"


@pytest.mark.parametrize("lang", sorted(CONSOLE))
def test_c39_the_console_says_every_reason_in_each_language(lang):
    words = CONSOLE[lang]
    for kind, english in pauses.ENGLISH.items():
        fields = {name for _, name, _, _ in string.Formatter().parse(words[f"pause_{kind}"])}
        assert fields - {None} == {
            name for _, name, _, _ in string.Formatter().parse(english) if name
        }, kind
    for text, _, _ in MADE.values():
        assert pause_in_words(text, words) != text  # said in words of the console's own


def test_c39_percentages_are_written_as_each_language_writes_them():
    text = pauses.complaints(0.0045, 0.003)
    assert (
        pause_in_words(text, CONSOLE["en"]) == "complaints at 0.45% of delivered mail (limit 0.30%)"
    )
    assert pause_in_words(text, CONSOLE["nl"]) == (
        "klachten over 0,45% van de afgeleverde mail (grens 0,30%)"
    )
    assert pause_in_words(text, CONSOLE["fr"]) == (
        "plaintes pour 0,45\u202f% du courrier remis (limite 0,30\u202f%)"
    )
    assert pause_in_words(pauses.by_marketer(), CONSOLE["en"]) == "by a marketer"
