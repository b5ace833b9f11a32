"""The `smtp` fixture gives every test the server's handler in its default state, whatever the
test before it changed, a field added to `RecordingHandler` later included: the reset walks the
dataclass fields instead of naming them.

This module has a server of its own (it overrides `smtp_server`), so what its tests change
never reaches the session's server."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from tests.smtp import RecordingHandler, SmtpServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def change_every_field(handler: RecordingHandler) -> None:
    for spec in dataclasses.fields(handler):
        setattr(handler, spec.name, object())  # equal to no default


@dataclasses.dataclass(eq=True)
class LaterHandler(RecordingHandler):
    """A handler with a field the fixture's author did not know about."""

    added_later: list[str] = dataclasses.field(default_factory=list)
    added_later_too: int = 0


def test_reset_restores_every_field_including_one_added_later():
    handler = LaterHandler()
    change_every_field(handler)
    assert handler != LaterHandler()
    handler.reset()
    assert handler == LaterHandler()


LEFT_BEHIND: list[RecordingHandler] = []


def test_a_test_changes_every_field_of_the_handler(smtp):
    change_every_field(smtp)
    LEFT_BEHIND.append(smtp)


def test_the_next_test_gets_the_handler_in_its_default_state(smtp, smtp_server):
    assert LEFT_BEHIND, "this test checks what the test before it left: run the whole module"
    assert smtp is LEFT_BEHIND[-1] is smtp_server.handler  # the same handler, reset in place
    assert smtp == RecordingHandler()
