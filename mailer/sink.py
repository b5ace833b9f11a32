"""A local SMTP sink for trying the service: every message is stored as a .eml file under
var/outbox/ and nothing leaves the machine (`make run` starts it)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class OutboxHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        # What a delivering MTA adds (RFC 5321 4.4): the envelope sender, where a bounce goes.
        return_path = f"Return-Path: <{envelope.mail_from or ''}>\r\n".encode()
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        (self.directory / name).write_bytes(return_path + content)
        return "250 OK: stored in the outbox"


def start_sink(host: str, port: int, directory: Path) -> Any:
    controller = Controller(OutboxHandler(directory), hostname=host, port=port)
    controller.start()
    return controller
