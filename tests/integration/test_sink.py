"""The local SMTP sink `make run` starts (mailer/sink.py): a real server on a free port storing
every message it accepts as its own .eml file, so a newcomer can open what the service sent.
Sent with `smtplib`, as any client would."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from campaigns.clock import FixedClock
from mailer.delivery.notices import notice
from mailer.sink import start_sink
from tests.conftest import NOW, business_config
from tests.smtp import free_port

pytestmark = pytest.mark.integration
NAME = re.compile(r"\d{8}-\d{6}-[0-9a-f]{8}\.eml")  # when, then a random part


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port, outbox = free_port(), tmp_path / "var" / "outbox"
    controller = start_sink("127.0.0.1", port, outbox)
    try:
        yield port, outbox
    finally:
        controller.stop()


def mails() -> list[tuple[str, bytes]]:
    """Two service mails as the service composes them: (recipient, bytes)."""
    sender, clock = business_config().sender, FixedClock(NOW)
    confirm = notice(
        "confirm",
        to_email="an@example.be",
        to_name="An Peeters",
        locale="nl",
        sender=sender,
        clock=clock,
        link="https://mailer.example.test/confirm/abc",
    )
    ack = notice(
        "ack", to_email="emile@example.fr", to_name="Émile", locale="fr", sender=sender, clock=clock
    )
    return [(m.recipient, m.data) for m in (confirm, ack)]


def parse(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def test_sink_stores_each_message_as_its_own_eml_file_with_the_same_bytes(sink):
    port, outbox = sink
    sent = mails()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for recipient, data in sent:
            assert client.sendmail("bounces@ollekebolleke.be", [recipient], data) == {}
    files = sorted(outbox.iterdir())
    assert len(files) == 2
    assert all(NAME.fullmatch(f.name) for f in files), [f.name for f in files]
    stored = {f.read_bytes() for f in files}
    # byte for byte (CRLF, dot-stuffing undone), after the Return-Path a delivering MTA adds
    return_path = b"Return-Path: <bounces@ollekebolleke.be>\r\n"
    assert stored == {return_path + data for _, data in sent}
    originals = {m["Message-ID"]: m for m in (parse(data) for _, data in sent)}
    for data in stored:
        message = parse(data)
        original = originals.pop(message["Message-ID"])
        assert message.items() == [("Return-Path", "<bounces@ollekebolleke.be>"), *original.items()]
        assert [p.get_content() for p in message.iter_parts()] == [
            p.get_content() for p in original.iter_parts()
        ]
    assert originals == {}


def test_sink_answers_250_and_keeps_a_line_starting_with_a_dot(sink):
    port, outbox = sink
    data = b"From: a@example.be\r\nTo: b@example.be\r\nSubject: dots\r\n\r\n.one\r\n..two\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.be")
        client.rcpt("b@example.be")
        assert client.data(data) == (250, b"OK: stored in the outbox")
    (stored,) = outbox.iterdir()
    assert stored.read_bytes() == b"Return-Path: <a@example.be>\r\n" + data


def test_sink_accepts_any_recipient_and_stores_instead_of_relaying(sink):
    """Nothing leaves the machine: an outside address is accepted and ends up in the outbox."""
    port, outbox = sink
    outside = ["someone@gmail.com", "other@outlook.com"]
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        refused = client.sendmail("a@example.be", outside, b"Subject: out\r\n\r\nHello\r\n")
    assert refused == {}
    (stored,) = outbox.iterdir()
    # one file for the message, with where a bounce would go
    assert stored.read_bytes() == b"Return-Path: <a@example.be>\r\nSubject: out\r\n\r\nHello\r\n"


def test_sink_makes_its_directory_and_keeps_what_is_there(tmp_path):
    outbox = tmp_path / "a" / "b" / "outbox"
    port = free_port()
    controller = start_sink("127.0.0.1", port, outbox)
    try:
        assert outbox.is_dir()  # made at start, before any mail
    finally:
        controller.stop()
    earlier = outbox / "earlier.eml"
    earlier.write_bytes(b"Subject: kept\r\n\r\n")
    controller = start_sink("127.0.0.1", port, outbox)  # a second `make run`
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.be", ["b@example.be"], b"Subject: new\r\n\r\nx\r\n")
    finally:
        controller.stop()
    assert earlier.read_bytes() == b"Subject: kept\r\n\r\n"
    assert len(list(outbox.iterdir())) == 2
