"""Bounce benchmark: reports per second through the inbound listener, from SMTP to decision.

What is measured (PostgreSQL only, everything on loopback):

* Data: a fresh database (`mailer_bench_bounces`, dropped at the end), migrated with the real
  `python -m mailer migrate`, then loaded in SQL (COPY): per run, N contacts with a newsletter
  consent, their address hashes under the benchmark's secret (the service's own HMAC, so the
  suppression list finds them) and, filled from that evidence with the migration's statements,
  their projections and marketing profile; 20,000 more contacts nobody reports on; an older
  campaign every contact got three weeks ago (so "soft bounces in a row" has a history to
  read); and per run a campaign whose run is done, with one `sent` delivery per contact and its
  counts per receiving domain (what the dispatcher would have left).
* Reports: one per delivery of the run, each written as the mail system that sends it writes
  it, around the message we sent (composed by the service's own composer for that delivery,
  with the Received and DKIM-Signature headers it picked up on the way), 3-6 KB each:
  - 60% hard bounces: RFC 3464 DSNs, `Status: 5.1.1`: half from a Postfix relay (a fifth of
    all with the whole message returned, message/rfc822, the rest its headers), half Exchange
    Online NDRs (text and HTML notification, the returned headers);
  - 25% soft: Postfix "Delayed Mail" warnings, `Action: delayed`, `Status: 4.2.2`;
  - 10% complaints: RFC 5965 ARF (`multipart/report; report-type=feedback-report`,
    `Feedback-Type: abuse`, the message attached) sent to plain `bounces@`, as a feedback loop
    sends them to the address it was given: the delivery is found from the report itself
    (Original-Mail-From, the VERP address);
  - 5% auto-replies (RFC 3834; an Outlook "Automatisch antwoord" and a French vacation reply).
  Bounces and auto-replies go to the VERP address of their delivery,
  `bounces+<signer.delivery_token(Kind.BOUNCE, delivery_id)>@<mail_domain>`; every report comes
  with `MAIL FROM:<>`. The mix is shuffled, so every connection carries all kinds.
* Client: aiosmtplib, `--connections` concurrent SMTP connections (12), each sending
  `--per-connection` reports (10) before QUIT and a new connection, in this (the parent)
  process. All reports are built before the clock starts.
* Ours: a FRESH child process per run, the real listener as `serve` wires it:
  `Services.build(Settings.from_env())`, `services.start()`, `services.inbound_handler()`,
  `mailer.inbound.start_listener(handler, host, port)`, with `serve`'s logging (INFO, to a
  file). The clock runs from just before the client's first connection to the moment the
  child's `await handler.idle()` returns after the client has had its last 250: every report
  is then decided (stored, read, mapped, its verdict applied and committed). The clock is
  time.perf_counter, CLOCK_MONOTONIC on Linux: one clock for both processes.
* Reference, in the same run, just before ours: the same reports from the same client into a
  fresh child running aiosmtpd with the listener's own server class
  (`mailer.inbound.ReportServer`) and a bare handler that answers 250 and keeps nothing.
* Checked after each run, or the benchmark fails: the verdict stored for each delivery is the
  kind of report sent for it, nothing is left pending or in review; one `hard_bounce`
  suppression per hard bounce and one `complaint` per complaint, for the run's campaign, and
  none for soft bounces and auto-replies (one soft bounce is not `soft_bounce_limit` in a row);
  those contacts' profiles are flagged suppressed; the hard-bounced deliveries are `bounced`;
  the run's counts per domain add up.
* Memory: the child's RSS (VmRSS) sampled every 0.2 s and when each tenth of the reports has
  been decided; flat memory is RSS after all N decided within 20% of RSS after N/5 decided
  (2,000 of 10,000). Peak RSS is the child's high-water mark, VmHWM: its ru_maxrss
  (getrusage) is also recorded, but Linux hands a child the parent's peak there at exec, and
  the parent holds the reports.
* `--profile FILE`: one more run of ours (not counted) during which py-spy samples the child
  (`--idle --nonblocking`, raw collapsed stacks to FILE); the report splits its wall time into
  the SMTP server, reading the reports, the database, logging, the event loop and idle.

Target (issue): at least 500 reports/s end to end on this machine, with flat memory. Client,
listener and PostgreSQL share the machine's CPUs.

Run: `.venv/bin/python bench/bounces.py [--reports N] [--runs R] [--profile FILE]`; the
median of R runs is reported, and the results go to bench/results/bounces.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import logging
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiosmtplib
from common import (
    CONFIG,
    DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    LOCALES,
    PG_ADMIN_DATABASE,
    PG_HOST,
    PG_PORT,
    PG_USER,
    ROOT,
    SECRET,
    TEMPLATES,
    WORDING,
    mailer,
    pg_connect,
    pg_recreate,
)
from rich.console import Console
from rich.table import Table
from sqlalchemy.dialects import postgresql

from campaigns.clock import FixedClock
from campaigns.config import parse_business_config
from campaigns.evidence.projections import rebuild_statements
from campaigns.models import Campaign
from campaigns.suppression.hashing import AddressHasher
from campaigns.tokens import Kind
from mailer.delivery.compose import Recipient
from mailer.delivery.footer import MailBasis
from mailer.services import Services
from mailer.settings import Settings

SCRIPT = Path(__file__).resolve()
RESULTS = SCRIPT.parent / "results" / "bounces.json"

PG_DATABASE = "mailer_bench_bounces"
PUBLIC_URL = "https://news.ollekebolleke.be"
HOST = "127.0.0.1"
BACKGROUND_CONTACTS = 20_000  # contacts no report is about
MIX = (("hard", 0.60), ("soft", 0.25), ("complaint", 0.10), ("auto_reply", 0.05))
SUPPRESSES = {"hard": "hard_bounce", "complaint": "complaint"}

TARGET_RATE = 500.0  # reports/s, end to end (the issue)
TARGET_RSS_RATIO = 1.2  # RSS after N / RSS after N/5
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # as `python -m mailer` logs

COMMAND_TIMEOUT = 300.0  # s, migrate, loading, VACUUM
CHILD_START_TIMEOUT = 60.0  # s
CLIENT_TIMEOUT = 60.0  # s, one SMTP command
PROFILER_START_TIMEOUT = 30.0  # s
SAMPLE_SECONDS = 0.2


def run_timeout(reports: int) -> float:
    """Seconds one run may take: generous (20 reports/s), but bounded."""
    return 120.0 + reports / 20


console = Console()


# ---- settings ------------------------------------------------------------------------------


def pg_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def bench_env(port: int = 0) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MAILER_DATABASE_URL=pg_url(PG_DATABASE),
        MAILER_CONFIG=str(CONFIG),
        MAILER_SECRET_KEYS=SECRET,
        MAILER_DEV="1",
        MAILER_PUBLIC_URL=PUBLIC_URL,
        MAILER_TEMPLATES_DIR=str(TEMPLATES),
        MAILER_INBOUND_HOST=HOST,
        MAILER_INBOUND_PORT=str(port),
        MAILER_SMTP_HOST=HOST,
        MAILER_SMTP_PORT="9",  # nothing is sent: reports get no acknowledgement
        PYTHONUNBUFFERED="1",
    )
    for name in ("MAILER_DKIM_SELECTOR", "MAILER_DKIM_KEY_FILE"):
        env.pop(name, None)
    return env


def bench_settings() -> Settings:
    return Settings(
        business=parse_business_config(tomllib.loads(CONFIG.read_text(encoding="utf-8"))),
        database_url=pg_url(PG_DATABASE),
        secret_keys=(SECRET.encode(),),
        public_url=PUBLIC_URL,
        dev_mode=True,
        templates_dir=TEMPLATES,
        inbound_port=0,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# ---- PostgreSQL ----------------------------------------------------------------------------


async def _connect(database: str) -> Any:
    return await pg_connect(database, command_timeout=COMMAND_TIMEOUT)


# ---- data ----------------------------------------------------------------------------------


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return ascii_text.lower().replace(" ", "")


def _hex(text: str, size: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


@dataclass(frozen=True)
class Person:
    contact_id: str
    email: str
    name: str
    locale: str
    consent_at: datetime


def person(i: int, now: datetime) -> Person:
    rng = random.Random(i)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return Person(
        contact_id=_hex(f"bounce-contact-{i}"),
        email=f"{_slug(first)}.{_slug(last)}.{i}@{rng.choice(DOMAINS)}",
        name=f"{first} {last}",
        locale=rng.choice(LOCALES),
        consent_at=now - timedelta(days=rng.randint(30, 700), seconds=rng.randint(0, 86399)),
    )


CONTACT_COLUMNS = (
    "id", "email", "external_id", "name", "locale", "source_channel", "source_url",
    "created_at", "updated_at",
)  # fmt: skip
CONSENT_COLUMNS = (
    "contact_id", "purpose", "granted", "captured_at", "wording", "wording_version", "channel",
    "url", "ip", "checkbox_prechecked", "capture_method", "valid", "recorded_at", "fingerprint",
)  # fmt: skip
CHECKOUT = "https://shop.example.be/checkout"


def contact_row(i: int, p: Person) -> tuple[Any, ...]:
    return (
        p.contact_id, p.email, f"cust-{i}", p.name, p.locale, "checkout", CHECKOUT,
        p.consent_at, p.consent_at,
    )  # fmt: skip


def consent_row(i: int, p: Person) -> tuple[Any, ...]:
    """A valid newsletter grant with its evidence, captured at checkout."""
    return (
        p.contact_id, "newsletter", True, p.consent_at, WORDING[p.locale], "2026-01",
        "checkout", CHECKOUT, f"203.0.113.{i % 254 + 1}", False, "checkbox", True,
        p.consent_at, _hex(f"consent-{i}", 64),
    )  # fmt: skip


@dataclass(frozen=True)
class Target:
    """A delivery a report is about."""

    delivery_id: int
    person: Person


@dataclass
class RunData:
    campaign: Campaign
    run_id: int
    targets: list[Target]
    sent_at: datetime


async def _load(
    settings: Settings, reports: int, blocks: int, now: datetime
) -> tuple[list[RunData], dict[str, int]]:
    """Load everything in one transaction; return each run's campaign and deliveries."""
    hasher = AddressHasher(settings.secret_keys)
    total = blocks * reports + BACKGROUND_CONTACTS
    people = [person(i, now) for i in range(total)]
    conn = await _connect(PG_DATABASE)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "contact",
                columns=CONTACT_COLUMNS,
                records=[contact_row(i, p) for i, p in enumerate(people)],
            )
            await conn.copy_records_to_table(
                "contact_hash",
                columns=["contact_id", "key_id", "address_hash"],
                records=[
                    (p.contact_id, key_id, digest)
                    for p in people
                    for key_id, digest in hasher.keyed_hashes(p.email)
                ],
            )
            await conn.copy_records_to_table(
                "consent_event",
                columns=CONSENT_COLUMNS,
                records=[consent_row(i, p) for i, p in enumerate(people)],
            )
            # The evidence went in behind the service's back: fill the projections (current
            # consent, marketing profile ...) from it, as the migration that made them does.
            for statement in rebuild_statements():
                await conn.execute(literal_sql(statement))

            async def campaign(name: str, at: datetime) -> tuple[str, int]:
                campaign_id = _hex(f"campaign-{name}")
                await conn.execute(
                    "INSERT INTO campaign (id, name, purpose, subject, template, status,"
                    " created_at, updated_at)"
                    " VALUES ($1, $2, 'newsletter', $3, 'newsletter.html', 'done', $4, $4)",
                    campaign_id, name, "Nieuws van Olleke Bolleke", at - timedelta(hours=1),
                )  # fmt: skip
                run_id = await conn.fetchval(
                    "INSERT INTO campaign_run (campaign_id, scheduled_for, status, started_at,"
                    " finished_at) VALUES ($1, $2, 'done', $2, $3) RETURNING id",
                    campaign_id, at, at + timedelta(seconds=30),
                )  # fmt: skip
                return campaign_id, int(run_id)

            async def deliveries(
                campaign_id: str, run_id: int, ids: list[str], at: datetime
            ) -> dict[str, int]:
                rows = await conn.fetch(
                    "INSERT INTO delivery (campaign_id, run, contact_id, status, basis_kind,"
                    " consent_event_id, queued_at, sent_at, attempts, claimed_at)"
                    " SELECT $1, $2, e.contact_id, 'sent', 'consent', e.id, $3, $3, 1, $3"
                    " FROM unnest($4::varchar[]) WITH ORDINALITY AS u(contact_id, n)"
                    " JOIN consent_event e ON e.contact_id = u.contact_id ORDER BY u.n"
                    " RETURNING id, contact_id",
                    campaign_id, run_id, at, ids,
                )  # fmt: skip
                found = {str(r["contact_id"]): int(r["id"]) for r in rows}
                domains = Counter(
                    p.email.rpartition("@")[2] for p in people if p.contact_id in found
                )
                await conn.executemany(
                    "INSERT INTO run_domain_count (run_id, domain, messages, delivered,"
                    " hard_bounces, soft_bounces, blocks, complaints)"
                    " VALUES ($1, $2, $3, $3, 0, 0, 0, 0)",
                    [(run_id, domain, n) for domain, n in sorted(domains.items())],
                )
                return found

            past_at = now - timedelta(days=21)
            past_id, past_run = await campaign("Past mailing", past_at)
            await deliveries(past_id, past_run, [p.contact_id for p in people], past_at)
            runs = []
            sent_at = now - timedelta(hours=6)  # the delay warnings come 4 hours after
            for block in range(blocks):
                campaign_id, run_id = await campaign(f"Bench bounces {block}", sent_at)
                mine = people[block * reports : (block + 1) * reports]
                found = await deliveries(campaign_id, run_id, [p.contact_id for p in mine], sent_at)
                campaign_row = Campaign(
                    id=campaign_id, name=f"Bench bounces {block}", purpose="newsletter",
                    subject="Nieuws van Olleke Bolleke", template="newsletter.html",
                    status="done", created_at=sent_at, updated_at=sent_at,
                )  # fmt: skip
                targets = [Target(found[p.contact_id], p) for p in mine]
                runs.append(RunData(campaign_row, run_id, targets, sent_at))
        await conn.execute("ANALYZE")
        sizes = {
            table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            for table in ("contact", "delivery", "marketing_profile", "consent_event")
        }
    finally:
        await conn.close()
    return runs, sizes


def literal_sql(statement: Any) -> str:
    """A statement as PostgreSQL text with its values inline (as bench/audience.py loads)."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def load(settings: Settings, reports: int, blocks: int) -> tuple[list[RunData], dict[str, int]]:
    return asyncio.run(_load(settings, reports, blocks, datetime.now(UTC)))


async def _vacuum() -> None:
    conn = await _connect(PG_DATABASE)
    try:
        for table in ("inbound_message", "delivery", "suppression", "marketing_profile"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
    finally:
        await conn.close()


# ---- the reports ---------------------------------------------------------------------------

OUR_RELAY = "smtp-out1.ollekebolleke.be"
OUR_RELAY_IP = "198.51.100.25"
APP_HOST = "app1.ollekebolleke.be"


@dataclass(frozen=True)
class Report:
    delivery_id: int
    kind: str  # the verdict it must get: hard | soft | complaint | auto_reply
    recipient: str  # RCPT TO
    helo: str  # the reporting MTA
    data: bytes


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii")


def _fold(value: str, width: int = 72) -> str:
    return "\n\t ".join(value[i : i + width] for i in range(0, len(value), width))


def _date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC))


class Writer:
    """Writes each kind of report around the message we sent, as the mail system that sends
    it does (Postfix, Exchange Online, a feedback loop, Outlook, a vacation program)."""

    def __init__(self, services: Services, run: RunData) -> None:
        self.signer = services.signer
        self.domain = services.context.config.sender.mail_domain
        self.composer = services.composers.for_campaign(run.campaign)
        self.sent_at = run.sent_at
        self.subject = run.campaign.subject

    def report(self, target: Target, kind: str, rng: random.Random) -> Report:
        p = target.person
        composed = self.composer.compose(
            Recipient(
                delivery_id=target.delivery_id,
                contact_id=p.contact_id,
                email=p.email,
                name=p.name,
                locale=p.locale,
                basis=MailBasis("consent", p.consent_at, "newsletter"),
            )
        )
        verp = composed.envelope_from
        token = self.signer.delivery_token(Kind.BOUNCE, target.delivery_id)
        assert verp == f"bounces+{token}@{self.domain}", "the VERP address is not the token's"
        queued = self.sent_at + timedelta(seconds=rng.uniform(0, 30))
        when = queued + timedelta(minutes=rng.uniform(1, 35))
        qid = f"{rng.getrandbits(40):010X}"
        rdomain = p.email.rpartition("@")[2]
        hop = (
            f"Received: from {APP_HOST} ({APP_HOST} [10.0.0.5])\n"
            f"\tby {OUR_RELAY} (Postfix) with ESMTP id {qid}\n"
            f"\tfor <{p.email}>; {_date(queued)}\n"
        )
        message = _crlf(hop + self._dkim(target.delivery_id, queued)) + composed.data
        headers = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        remote = (
            f"Received: from {OUR_RELAY} ({OUR_RELAY} [{OUR_RELAY_IP}])\n"
            f"\tby mx{rng.randint(1, 4)}.{rdomain} (Postfix) with ESMTPS id {qid[::-1]}\n"
            f"\tfor <{p.email}>; {_date(queued + timedelta(seconds=2))}\n"
            f"Authentication-Results: mx.{rdomain}; spf=pass smtp.mailfrom={self.domain};\n"
            f"\tdkim=pass header.d={self.domain}; dmarc=pass header.from={self.domain}\n"
        )
        style = rng.random()
        if kind == "hard" and style < 0.2:  # the whole message returned
            data = self._postfix_failed(p.email, verp, qid, when, message, whole=True)
            return Report(target.delivery_id, kind, verp, OUR_RELAY, data)
        if kind == "hard" and style < 0.5:  # its headers only (RET=HDRS, or a size limit)
            data = self._postfix_failed(p.email, verp, qid, when, headers, whole=False)
            return Report(target.delivery_id, kind, verp, OUR_RELAY, data)
        if kind == "hard":
            data = self._exchange_ndr(p.email, verp, when, _crlf(remote) + headers, rng)
            return Report(
                target.delivery_id,
                kind,
                verp,
                "mail-am0eur01.outbound.protection.outlook.com",
                data,
            )
        if kind == "soft":
            data = self._postfix_delayed(p.email, verp, qid, queued, when, headers, rng)
            return Report(target.delivery_id, kind, verp, OUR_RELAY, data)
        if kind == "complaint":
            data = self._arf(
                p.email,
                verp,
                rdomain,
                when,
                _crlf(f"Return-Path: <{verp}>\n" + remote) + message,
                rng,
            )
            return Report(
                target.delivery_id, kind, f"bounces@{self.domain}", f"fbl.{rdomain}", data
            )
        data = self._auto_reply(p, verp, rdomain, composed.message_id, when, rng)
        return Report(target.delivery_id, kind, verp, f"mx.{rdomain}", data)

    def _dkim(self, delivery_id: int, at: datetime) -> str:
        seed = hashlib.sha256(f"dkim-{delivery_id}".encode()).digest()
        body_hash = base64.b64encode(hashlib.sha256(seed).digest()).decode()
        signature = base64.b64encode(seed * 8).decode()  # RSA-2048: 256 bytes
        return (
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={self.domain};\n"
            f"\ts=mail2026; t={int(at.timestamp())};\n"
            "\th=From:Reply-To:To:Subject:Date:Message-ID:List-Unsubscribe:\n"
            "\t List-Unsubscribe-Post:Feedback-ID:MIME-Version:Content-Type;\n"
            f"\tbh={body_hash};\n\tb={_fold(signature)}\n"
        )

    def _postfix_failed(
        self, email: str, verp: str, qid: str, when: datetime, returned: bytes, whole: bool
    ) -> bytes:
        returned_part = (
            "Content-Description: Undelivered Message\nContent-Type: message/rfc822"
            if whole
            else "Content-Description: Undelivered Message Headers\n"
            "Content-Type: text/rfc822-headers"
        )
        boundary = f"{qid}.{int(when.timestamp())}/{OUR_RELAY}"
        head = f"""Received: by {OUR_RELAY} (Postfix)
\tid {qid}; {_date(when)}
Date: {_date(when)}
From: MAILER-DAEMON@{OUR_RELAY} (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <{when:%Y%m%d%H%M%S}.{qid}@{OUR_RELAY}>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {OUR_RELAY}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{email}>: host mx1.{email.rpartition("@")[2]}[203.0.113.25] said: 550 5.1.1
    <{email}>: Recipient address rejected: User unknown in virtual mailbox
    table (in reply to RCPT TO command)

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {OUR_RELAY}
X-Postfix-Queue-ID: {qid}
X-Postfix-Sender: rfc822; {verp}
Arrival-Date: {_date(when - timedelta(seconds=3))}

Final-Recipient: rfc822; {email}
Original-Recipient: rfc822;{email}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx1.{email.rpartition("@")[2]}
Diagnostic-Code: smtp; 550 5.1.1 <{email}>: Recipient address rejected: User
    unknown in virtual mailbox table

--{boundary}
{returned_part}

"""
        return _crlf(head) + returned + _crlf(f"\n--{boundary}--\n")

    def _exchange_ndr(
        self, email: str, verp: str, when: datetime, returned: bytes, rng: random.Random
    ) -> bytes:
        server = f"AM{rng.randint(0, 9)}PR0{rng.randint(1, 9)}MB{rng.randint(1000, 9999)}"
        host = f"{server}.eurprd0{rng.randint(1, 8)}.prod.outlook.com"
        boundary = f"_{rng.getrandbits(64):016x}_"
        alt = f"_{rng.getrandbits(64):016x}_alt"
        local, _, rdomain = email.partition("@")
        head = f"""Received: from {host} (2603:10a6:20b:{rng.randint(1, 999)}::{rng.randint(1, 99)})
\tby {host} with Microsoft SMTP Server (version=TLS1_2,
\tcipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
\tid 15.20.{rng.randint(1000, 9999)}.{rng.randint(10, 99)}; {_date(when)}
MIME-Version: 1.0
From: postmaster@{rdomain}
To: {verp}
Date: {_date(when)}
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <{rng.getrandbits(96):024x}@{host}>
In-Reply-To: <{rng.getrandbits(64):016x}@{self.domain}>
Subject: Undeliverable: {self.subject}
Auto-Submitted: auto-replied

This is a multi-part message in MIME format.

--{boundary}
Content-Type: multipart/alternative; differences=Content-Type;
\tboundary="{alt}"

--{alt}
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: 7bit

Your message to {email} couldn't be delivered.

{local} wasn't found at {rdomain}.

Action Required
Recipient
Unknown To address

How to Fix It
The address may be misspelled or may not exist. Try one or more of the following:
- Retype the recipient's address, then resend the message.
- If you're using an address that was saved in your contacts, delete it and enter it
  again.

Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'

--{alt}
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: 7bit

<html><head><meta http-equiv="Content-Type" content="text/html; charset=us-ascii">
<title>DSN</title></head><body>
<table width="100%" border="0" cellspacing="0" cellpadding="0" style="max-width:548px">
<tr><td style="font-family:'Segoe UI',Frutiger,Arial,sans-serif;font-size:16px">
Your message to <a href="mailto:{email}">{email}</a> couldn't be delivered.</td></tr>
<tr><td style="font-family:'Segoe UI',Frutiger,Arial,sans-serif;font-size:16px">
<b>{local}</b> wasn't found at <b>{rdomain}</b>.</td></tr>
<tr><td style="font-family:'Segoe UI',Frutiger,Arial,sans-serif;font-size:14px">
<b>Action Required</b> Recipient: Unknown To address</td></tr></table>
<p style="font-family:'Segoe UI',Frutiger,Arial,sans-serif;font-size:14px">
The address may be misspelled or may not exist. Retype the recipient's address, then
resend the message.</p>
</body></html>

--{alt}--

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns;{host}
Received-From-MTA: dns;{OUR_RELAY}
Arrival-Date: {_date(when - timedelta(seconds=1))}

Final-Recipient: rfc822;{email}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found

--{boundary}
Content-Type: text/rfc822-headers

"""
        return _crlf(head) + returned + _crlf(f"\n--{boundary}--\n")

    def _postfix_delayed(
        self,
        email: str,
        verp: str,
        qid: str,
        queued: datetime,
        when: datetime,
        returned: bytes,
        rng: random.Random,
    ) -> bytes:
        when = queued + timedelta(hours=4, minutes=rng.uniform(0, 20))
        boundary = f"{qid}.{int(when.timestamp())}/{OUR_RELAY}"
        rdomain = email.rpartition("@")[2]
        said = rng.choice(
            (
                "452 4.2.2 <{email}>: Mailbox full",
                "452-4.2.2 The recipient's inbox is out of storage space. Please\n"
                "    direct the recipient to https://support.example.com/mail/?p=OverQuota",
            )
        ).format(email=email)
        head = f"""Received: by {OUR_RELAY} (Postfix)
\tid {qid}; {_date(when)}
Date: {_date(when)}
From: MAILER-DAEMON@{OUR_RELAY} (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: {verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <{when:%Y%m%d%H%M%S}.{qid}@{OUR_RELAY}>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {OUR_RELAY}.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than 4 hour(s).
It will be retried until it is 5 day(s) old.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{email}>: host mx1.{rdomain}[203.0.113.25] said: {said} (in reply to RCPT TO command)

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {OUR_RELAY}
X-Postfix-Queue-ID: {qid}
X-Postfix-Sender: rfc822; {verp}
Arrival-Date: {_date(queued)}

Final-Recipient: rfc822; {email}
Original-Recipient: rfc822;{email}
Action: delayed
Status: 4.2.2
Remote-MTA: dns; mx1.{rdomain}
Diagnostic-Code: smtp; {said}
Will-Retry-Until: {_date(queued + timedelta(days=5))}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

"""
        return _crlf(head) + returned + _crlf(f"\n--{boundary}--\n")

    def _arf(
        self,
        email: str,
        verp: str,
        rdomain: str,
        when: datetime,
        message: bytes,
        rng: random.Random,
    ) -> bytes:
        boundary = f"----=_Part_{rng.randint(100000, 999999)}_{rng.getrandbits(32)}"
        arrival = when - timedelta(minutes=rng.uniform(1, 30))
        head = f"""Received: from fbl.{rdomain} (fbl.{rdomain} [203.0.113.40])
\tby feedback.{rdomain} with ESMTP id {rng.getrandbits(48):012x}; {_date(when)}
From: Feedback Loop <feedback@fbl.{rdomain}>
To: bounces@{self.domain}
Subject: complaint about message from {OUR_RELAY_IP}
Date: {_date(when)}
Message-ID: <{rng.getrandbits(96):024x}@fbl.{rdomain}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
{OUR_RELAY_IP} on {_date(arrival)}. For more information about this
format please see http://www.mipassoc.org/arf/.

--{boundary}
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: {rdomain}-FBL/1.0
Version: 1
Original-Mail-From: <{verp}>
Original-Rcpt-To: <{email}>
Arrival-Date: {_date(arrival)}
Reporting-MTA: dns; fbl.{rdomain}
Source-IP: {OUR_RELAY_IP}
Authentication-Results: mx.{rdomain}; spf=pass smtp.mailfrom={self.domain};
    dkim=pass header.d={self.domain}
Reported-Domain: {self.domain}

--{boundary}
Content-Type: message/rfc822
Content-Disposition: inline

"""
        return _crlf(head) + message + _crlf(f"\n--{boundary}--\n")

    def _auto_reply(
        self,
        p: Person,
        verp: str,
        rdomain: str,
        message_id: str,
        when: datetime,
        rng: random.Random,
    ) -> bytes:
        first = p.name.split(" ")[0]
        plain_first = _slug(first).capitalize()
        boundary = f"_000_{rng.getrandbits(80):020x}_"
        until = (when + timedelta(days=rng.randint(3, 20))).strftime("%d/%m/%Y")
        if rng.random() < 0.5:  # Outlook / Exchange
            subject = f"Automatisch antwoord: {self.subject}"
            extra = (
                f"Thread-Topic: {self.subject}\n"
                f"Thread-Index: {base64.b64encode(rng.randbytes(22)).decode()}\n"
                "Auto-Submitted: auto-generated\n"
                f"X-MS-Exchange-Inbox-Rules-Loop: {p.email}\n"
                "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\n"
                "X-Auto-Response-Suppress: All\n"
                "Content-Language: nl-BE\n"
            )
            text = (
                f"Beste,\n\nIk ben afwezig tot en met {until} en heb in die periode geen toegang"
                " tot mijn e-mail.\nUw bericht wordt niet doorgestuurd. Voor dringende zaken"
                " kunt u contact opnemen\nmet mijn collega via het algemene nummer.\n\n"
                f"Met vriendelijke groeten,\n{plain_first}\n"
            )
        else:  # a vacation program
            subject = "=?UTF-8?Q?R=C3=A9ponse_automatique_:?= " + self.subject
            extra = "Auto-Submitted: auto-replied\nPrecedence: bulk\nX-Autoreply: yes\n"
            text = (
                f"Bonjour,\n\nJe suis absent(e) jusqu'au {until} inclus, avec un acces limite"
                " a mes e-mails.\nVotre message sera traite a mon retour. En cas d'urgence,"
                " merci de contacter\nle secretariat.\n\n"
                f"Bien cordialement,\n{plain_first}\n"
            )
        text += (
            "\n--\nDisclaimer: this e-mail and any attachments are confidential and intended"
            " solely for the\naddressee. If you received it in error, please notify the sender"
            " and delete it.\nAny use, dissemination or copying of this message by anyone"
            " else is prohibited.\n"
        )
        paragraphs = "".join(
            f"<p class=MsoNormal>{line}<o:p></o:p></p>\n" for line in text.splitlines() if line
        )
        html = f"""<html xmlns:v="urn:schemas-microsoft-com:vml"
xmlns:o="urn:schemas-microsoft-com:office:office" xmlns:w="urn:schemas-microsoft-com:office:word" xmlns="http://www.w3.org/TR/REC-html40">
<head><meta http-equiv="Content-Type" content="text/html; charset=us-ascii">
<meta name="Generator" content="Microsoft Word 15 (filtered medium)">
<style><!--
@font-face {{font-family:"Cambria Math"; panose-1:2 4 5 3 5 4 6 3 2 4;}}
@font-face {{font-family:Calibri; panose-1:2 15 5 2 2 2 4 3 2 4;}}
p.MsoNormal, li.MsoNormal, div.MsoNormal {{margin:0cm; font-size:11.0pt;
 font-family:"Calibri",sans-serif; mso-fareast-language:EN-US;}}
span.EmailStyle17 {{mso-style-type:personal-compose; font-family:"Calibri",sans-serif;}}
.MsoChpDefault {{mso-style-type:export-only; font-family:"Calibri",sans-serif;}}
@page WordSection1 {{size:612.0pt 792.0pt; margin:70.85pt 70.85pt 70.85pt 70.85pt;}}
div.WordSection1 {{page:WordSection1;}}
--></style></head>
<body lang="NL-BE" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">
<div class=WordSection1>
{paragraphs}</div>
</body></html>
"""
        head = f"""Received: from mx.{rdomain} (mx.{rdomain} [203.0.113.60])
\tby mx.{rdomain} with ESMTP id {rng.getrandbits(48):012x}; {_date(when)}
From: {plain_first} <{p.email}>
To: {verp}
Subject: {subject}
Date: {_date(when)}
Message-ID: <{rng.getrandbits(96):024x}@{rdomain}>
In-Reply-To: {message_id}
References: {message_id}
{extra}MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: 7bit

{text}
--{boundary}
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: 7bit

{html}
--{boundary}--
"""
        return _crlf(head)


def mix(n: int) -> list[str]:
    """Exactly the shares of MIX (rounded; auto-replies take the rest)."""
    counts = {kind: round(n * share) for kind, share in MIX[:-1]}
    counts[MIX[-1][0]] = n - sum(counts.values())
    return [kind for kind, count in counts.items() for _ in range(count)]


def write_reports(settings: Settings, run: RunData, seed: int) -> list[Report]:
    """One report per delivery of the run, the kinds shuffled."""
    rng = random.Random(seed)
    kinds = mix(len(run.targets))
    rng.shuffle(kinds)
    services = Services.build(settings, FixedClock(run.sent_at))
    writer = Writer(services, run)
    reports = [writer.report(t, k, rng) for t, k in zip(run.targets, kinds, strict=True)]
    asyncio.run(services.close())
    rng.shuffle(reports)
    return reports


# ---- the client ----------------------------------------------------------------------------


@dataclass
class Sent:
    started: float  # perf_counter, just before the first connection
    last_reply: float  # perf_counter, after the last 250
    connections: int


async def send_reports(
    port: int, reports: Sequence[Report], connections: int, per_connection: int
) -> Sent:
    """Every report over SMTP, `connections` at a time, `per_connection` per connection."""
    chunks = iter([reports[i : i + per_connection] for i in range(0, len(reports), per_connection)])
    opened = 0

    async def client() -> None:
        nonlocal opened
        for chunk in chunks:  # shared: each connection takes the next chunk
            smtp = aiosmtplib.SMTP(
                hostname=HOST, port=port, local_hostname=chunk[0].helo, timeout=CLIENT_TIMEOUT
            )
            await smtp.connect()
            opened += 1
            for report in chunk:
                await smtp.sendmail("", [report.recipient], report.data)  # MAIL FROM:<>
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return Sent(started, time.perf_counter(), opened)


# ---- the listening child -------------------------------------------------------------------


def _status(field_name: str, pid: int | str = "self") -> float:
    """A /proc/PID/status size in MiB (VmRSS, VmHWM)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    found = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


def _children() -> list[int]:
    """This process's children: the listener's report reader (a helper process it starts for
    a burst) and multiprocessing's resource tracker. They count as the listener."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == me:
                found.append(int(entry.name))
    return found


def _family_status(field_name: str) -> float:
    """VmRSS or VmHWM of this process and its children, summed."""
    return _status(field_name) + sum(_status(field_name, pid) for pid in _children())


def _children_cpu_seconds() -> float:
    total = 0
    for pid in _children():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1]
        except (FileNotFoundError, ProcessLookupError):
            continue
        utime, stime = fields.split()[11:13]
        total += int(utime) + int(stime)
    return total / TICK


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


class Progress(logging.Handler):
    """Counts decided reports from the listener's own log line per batch ("reports decided:
    N (...)"), and takes the RSS when each tenth of them has been decided."""

    def __init__(self, expected: int) -> None:
        super().__init__(logging.INFO)
        self.decided = 0
        self.failed = 0
        self.step = max(1, expected // 10)
        self.marks: dict[int, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.failed += 1
        elif str(record.msg).startswith("reports decided:"):
            self.tick(int(record.args[0]))  # type: ignore[index]

    def tick(self, n: int = 1) -> None:
        before = self.decided
        self.decided += n
        if self.decided // self.step > before // self.step:
            self.marks[self.decided // self.step * self.step] = round(_family_status("VmRSS"), 2)


class BareHandler:
    """The reference: answers 250 and keeps nothing."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.progress.tick()
        return "250 OK: received"


def emit(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


async def child_listen(kind: str, expected: int) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)  # as `python -m mailer serve`
    progress = Progress(expected)
    settings = Settings.from_env()
    from mailer.inbound import MAX_MESSAGE, ReportServer, start_listener

    services = None
    if kind == "ours":
        logging.getLogger("mailer.inbound").addHandler(progress)
        services = Services.build(settings)
        await services.start()
        handler = services.inbound_handler()
        listener = await start_listener(handler, settings.inbound_host, settings.inbound_port)
        close, idle = listener.close, handler.idle
    else:
        loop = asyncio.get_running_loop()
        bare = BareHandler(progress)
        server = await loop.create_server(
            lambda: ReportServer(
                bare,
                hostname=settings.business.sender.mail_domain,
                data_size_limit=MAX_MESSAGE,
                enable_SMTPUTF8=True,
            ),
            host=settings.inbound_host,
            port=settings.inbound_port,
            reuse_port=True,
        )

        async def close() -> None:
            server.close()
            await server.wait_closed()

        async def idle() -> None:
            return None

    samples: list[tuple[float, int, float]] = []

    async def sample() -> None:
        while True:
            rss = round(_family_status("VmRSS"), 2)
            samples.append((time.perf_counter(), progress.decided, rss))
            await asyncio.sleep(SAMPLE_SECONDS)

    rss_ready = _status("VmRSS")
    cpu_ready = _cpu_seconds()
    sampler = asyncio.create_task(sample())
    emit({"ready": True, "pid": os.getpid(), "rss_mb": round(rss_ready, 2)})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # the client had its last 250
    await idle()
    ended = time.perf_counter()
    helper_cpu = _children_cpu_seconds()  # children started after ready: all of theirs counts
    cpu = _cpu_seconds() - cpu_ready + helper_cpu
    sampler.cancel()
    result = {
        "ended": ended,
        "decided": progress.decided,
        "failed": progress.failed,
        "cpu_s": cpu,
        "helper_cpu_s": round(helper_cpu, 3),
        "helpers": len(_children()),
        "rss_ready_mb": round(rss_ready, 2),
        "rss_end_mb": round(_family_status("VmRSS"), 2),
        "rss_peak_mb": round(_family_status("VmHWM"), 2),
        "helper_rss_peak_mb": round(_family_status("VmHWM") - _status("VmHWM"), 2),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 2),
        "rss_marks_mb": progress.marks,
        "samples": samples,
    }
    await close()
    if services is not None:
        await services.close()
    return result


# ---- running a child -----------------------------------------------------------------------


PROFILE_RATE = 250  # py-spy samples per second


class Profiler:
    """py-spy sampling a child, raw collapsed stacks to a file: wall time (idle included), or
    with `gil` only while it holds the GIL (its Python code on a CPU)."""

    def __init__(self, pid: int, out: Path, gil: bool) -> None:
        self.out = out
        self.log = Path(tempfile.mkstemp(prefix="py-spy-", suffix=".log")[1])
        spy = Path(sys.executable).with_name("py-spy")
        command = [
            str(spy), "record", "--pid", str(pid), "--format", "raw", "-o", str(out),
            "--rate", str(PROFILE_RATE), "--gil" if gil else "--idle", "--nonblocking",
        ]  # fmt: skip
        with self.log.open("wb") as log_file:
            self.proc = subprocess.Popen(command, stdout=log_file, stderr=log_file)

    def wait_started(self) -> None:
        deadline = time.monotonic() + PROFILER_START_TIMEOUT
        while b"Sampling process" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"py-spy did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.unlink(missing_ok=True)


async def _measure(
    kind: str,
    reports: Sequence[Report],
    args: argparse.Namespace,
    log_path: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    port = free_port()
    env = bench_env(port)
    command = [sys.executable, str(SCRIPT), "--child", kind]
    command += ["--expected", str(len(reports))]
    with log_path.open("ab") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
        )
    assert proc.stdin is not None and proc.stdout is not None
    profiler = None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), CHILD_START_TIMEOUT)
        if not line:
            raise RuntimeError(f"the {kind} listener exited:\n{_tail(log_path)}")
        ready = json.loads(line)
        if profile is not None:
            profiler = Profiler(int(ready["pid"]), profile, args.profile_gil)
            await asyncio.to_thread(profiler.wait_started)
        cpu_before = CpuSnapshot.take()
        sent = await asyncio.wait_for(
            send_reports(port, reports, args.connections, args.per_connection),
            run_timeout(len(reports)),
        )
        proc.stdin.write(b"sent\n")
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stdout.readline(), run_timeout(len(reports)))
        cpu = CpuSnapshot.take().since(cpu_before)
        if not line:
            raise RuntimeError(f"the {kind} listener exited:\n{_tail(log_path)}")
        result: dict[str, Any] = json.loads(line)
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if profiler is not None:
            await asyncio.to_thread(profiler.stop)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"the {kind} listener exited {proc.returncode}:\n{_tail(log_path)}")
    n = len(reports)
    seconds = float(result["ended"]) - sent.started
    result.update(
        seconds=seconds,
        rate=n / seconds,
        accepted_seconds=sent.last_reply - sent.started,
        accepted_rate=n / (sent.last_reply - sent.started),
        connections_opened=sent.connections,
        cpu_us_per_report=float(result["cpu_s"]) / n * 1e6,
        postgres_cpu_us_per_report=cpu["postgres_cpu_s"] / n * 1e6,
        client_cpu_us_per_report=cpu["client_cpu_s"] / n * 1e6,
        **cpu,
    )
    # CPU the machine spent on anything else meanwhile (other processes on a shared host):
    # when it is large, the run measured the neighbours too.
    ours = float(result["cpu_s"]) + cpu["postgres_cpu_s"] + cpu["client_cpu_s"]
    result["other_cpu_share"] = round(max(0.0, cpu["machine_busy_cpu_s"] - ours) / seconds, 3)
    # Sample times relative to the first connection; how far decisions had got when the
    # last report was answered, and how fast they went on from there.
    samples = [(round(t - sent.started, 2), d, r) for t, d, r in result["samples"]]
    result["samples"] = samples
    accepted = sent.last_reply - sent.started
    then = max((s for s in samples if s[0] <= accepted), default=(0.0, 0, 0.0))
    result["decided_when_all_answered"] = then[1]
    result["decision_rate_after_intake"] = (
        (n - then[1]) / (seconds - then[0]) if seconds > then[0] else 0.0
    )
    if result["decided"] != n or result["failed"]:
        raise AssertionError(
            f"{kind}: {result['decided']} of {n} reports decided, {result['failed']} errors:\n"
            + _tail(log_path)
        )
    return result


TICK = os.sysconf("SC_CLK_TCK")


def _postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process (the server's backends, and through the postmaster's
    children's times those that exited), in seconds."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text(encoding="ascii", errors="replace")
        except OSError:
            continue  # gone meanwhile
        name, _, rest = text.rpartition(")")
        if not name.endswith("(postgres"):
            continue
        fields = rest.split()  # from field 3 (state) on
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / TICK


@dataclass(frozen=True)
class CpuSnapshot:
    """Where the machine's CPU went: all of it, PostgreSQL's, and this process's (the
    client's, while a run is measured)."""

    machine_total: int
    machine_idle: int
    postgres_s: float
    client_s: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        fields = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
        values = [int(v) for v in fields]
        return cls(sum(values), values[3] + values[4], _postgres_cpu_seconds(), _cpu_seconds())

    def since(self, before: CpuSnapshot) -> dict[str, float]:
        spent = self.machine_total - before.machine_total
        idle = self.machine_idle - before.machine_idle
        return {
            "machine_cpu_busy": round(1 - idle / spent, 3) if spent else 0.0,
            "machine_busy_cpu_s": round((spent - idle) / TICK, 3),
            "postgres_cpu_s": round(self.postgres_s - before.postgres_s, 3),
            "client_cpu_s": round(self.client_s - before.client_s, 3),
        }


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-size:]
    except OSError:
        return ""


# ---- checks --------------------------------------------------------------------------------


async def _check(run: RunData, reports: Sequence[Report], first_message: int) -> dict[str, Any]:
    """What the run must have left in the database; raises when it is not so."""
    conn = await _connect(PG_DATABASE)
    try:
        rows = await conn.fetch(
            "SELECT delivery_id, verdict, state, form FROM inbound_message WHERE id > $1",
            first_message,
        )
        campaign_id = run.campaign.id
        suppressions = {
            str(r["reason"]): int(r["n"])
            for r in await conn.fetch(
                "SELECT reason, count(*) AS n FROM suppression WHERE campaign_id = $1"
                " GROUP BY reason",
                campaign_id,
            )
        }
        statuses = {
            str(r["status"]): int(r["n"])
            for r in await conn.fetch(
                "SELECT status, count(*) AS n FROM delivery WHERE campaign_id = $1 GROUP BY status",
                campaign_id,
            )
        }
        flagged = int(
            await conn.fetchval(
                "SELECT count(*) FROM marketing_profile p JOIN delivery d"
                " ON d.contact_id = p.contact_id WHERE d.campaign_id = $1 AND p.suppressed",
                campaign_id,
            )
        )
        counts = await conn.fetchrow(
            "SELECT sum(messages) AS messages, sum(delivered) AS delivered,"
            " sum(hard_bounces) AS hard, sum(soft_bounces) AS soft,"
            " sum(complaints) AS complaints FROM run_domain_count WHERE run_id = $1",
            run.run_id,
        )
    finally:
        await conn.close()
    sent = Counter(r.kind for r in reports)
    expected = {r.delivery_id: r.kind for r in reports}
    got = {int(r["delivery_id"]): str(r["verdict"]) for r in rows if r["delivery_id"] is not None}
    verdicts = Counter(str(r["verdict"]) for r in rows)
    states = Counter(str(r["state"]) for r in rows)
    wrong = [(d, k, got.get(d)) for d, k in expected.items() if got.get(d) != k]
    problems = []
    if len(rows) != len(reports):
        problems.append(f"{len(rows)} reports stored for {len(reports)} sent")
    if wrong:
        problems.append(f"{len(wrong)} deliveries with the wrong verdict, e.g. {wrong[:3]}")
    if states != Counter({"decided": len(reports)}):
        problems.append(f"states {dict(states)}")
    want_suppressions = {reason: sent[kind] for kind, reason in SUPPRESSES.items() if sent[kind]}
    if suppressions != want_suppressions:
        problems.append(f"suppressions {suppressions}, expected {want_suppressions}")
    if flagged != sum(want_suppressions.values()):
        problems.append(f"{flagged} profiles flagged suppressed")
    if statuses.get("bounced", 0) != sent["hard"] or statuses.get("sent", 0) != (
        len(reports) - sent["hard"]
    ):
        problems.append(f"delivery statuses {statuses}")
    n = len(reports)
    if counts is None or (counts["messages"], counts["delivered"], counts["hard"]) != (
        n,
        n - sent["hard"],
        sent["hard"],
    ):
        problems.append(f"run counts {dict(counts) if counts else None}")
    elif (counts["soft"], counts["complaints"]) != (sent["soft"], sent["complaint"]):
        problems.append(f"run counts {dict(counts)}")
    if problems:
        raise AssertionError("the run left the wrong state: " + "; ".join(problems))
    return {
        "verdicts": dict(sorted(verdicts.items())),
        "forms": dict(sorted(Counter(str(r["form"]) for r in rows).items())),
        "suppressions": dict(sorted(suppressions.items())),
        "delivery_statuses": dict(sorted(statuses.items())),
        "profiles_flagged_suppressed": flagged,
        "run_counts": dict(counts),
    }


async def _max_message_id() -> int:
    conn = await _connect(PG_DATABASE)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM inbound_message"))
    finally:
        await conn.close()


async def _sessions() -> int:
    """Sessions PostgreSQL has opened on the benchmark database so far (pg_stat_database)."""
    conn = await _connect(PG_ADMIN_DATABASE)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(
            await conn.fetchval(
                "SELECT sessions FROM pg_stat_database WHERE datname = $1", PG_DATABASE
            )
        )
    finally:
        await conn.close()


# ---- the profile ---------------------------------------------------------------------------

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("idle (waiting for the database or clients)", ("selectors.py", "select (")),
    ("reading the report (email parser, reading.py, flufl)", (
        "campaigns/returns/reading.py", "/email/", "flufl/",
    )),
    ("decision table, tokens", ("campaigns/returns/table.py", "campaigns/tokens.py")),
    ("database: SQLAlchemy and asyncpg", ("sqlalchemy/", "asyncpg/")),
    ("logging", ("logging/",)),
    ("SMTP server (aiosmtpd)", ("aiosmtpd/",)),
    ("event loop, sockets (asyncio)", ("asyncio/",)),
)  # fmt: skip
OTHER = "other (project code, interpreter)"


def categorise(frames: list[str]) -> str:
    """The innermost library a sample is in."""
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return OTHER


def _function(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


def summarise_profile(path: Path, reports: int, mode: str) -> dict[str, Any]:
    """Shares of the samples, and microseconds per report (samples / rate / reports)."""
    per_category: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = detached = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if any("threading.py" in f for f in frames[:3]):
            continue  # the thread that waits for the client's "sent"
        count = int(count_text)
        total += count
        if frames and "sqlalchemy/" in frames[0]:
            detached += count  # SQLAlchemy's greenlet: its own stack, without the caller's
        per_category[categorise(frames)] += count
        if frames:
            self_time[_function(frames[-1])] += count
        for function in {_function(f) for f in frames}:
            inclusive[function] += count
    if not total:
        return {"samples": 0}
    us_per_sample = 1e6 / PROFILE_RATE / reports

    def share(n: int) -> dict[str, float]:
        return {"share": round(n / total, 4), "us_per_report": round(n * us_per_sample)}

    project = [
        (frame, n)
        for frame, n in inclusive.most_common()
        if any(p in frame for p in ("mailer/", "campaigns/"))
    ]
    return {
        "mode": mode,
        "samples": total,
        "samples_in_sqlalchemy_greenlets": round(detached / total, 4),
        "us_per_report": round(total * us_per_sample),
        "categories": {
            name: share(per_category[name]) for name in [c for c, _ in CATEGORIES] + [OTHER]
        },
        "top_self": [{"frame": f, **share(n)} for f, n in self_time.most_common(20)],
        "top_inclusive_project": [{"frame": f, **share(n)} for f, n in project[:30]],
    }


def print_profile(profile: dict[str, Any]) -> None:
    what = "GIL-holding time" if profile["mode"] == "gil" else "wall time"
    table = Table(
        title=f"Where the listener's {what} goes (py-spy, {profile['samples']:,} samples,"
        f" {profile['us_per_report']} us per report)"
    )
    table.add_column("part")
    table.add_column("share", justify="right")
    table.add_column("us / report", justify="right")
    for name, value in profile["categories"].items():
        table.add_row(name, f"{value['share']:.1%}", f"{value['us_per_report']}")
    console.print(table)
    console.print(
        f"{profile['samples_in_sqlalchemy_greenlets']:.0%} of the samples are SQLAlchemy's own"
        " work in the greenlet it runs the driver in: py-spy sees that stack without the caller,"
        " so the project functions' inclusive shares below leave it out."
    )
    hot = Table(title="Hottest functions (self time)")
    hot.add_column("function")
    hot.add_column("share", justify="right")
    for item in profile["top_self"][:15]:
        hot.add_row(item["frame"], f"{item['share']:.1%}")
    console.print(hot)
    inc = Table(title="Project code (inclusive time)")
    inc.add_column("function")
    inc.add_column("share", justify="right")
    inc.add_column("us / report", justify="right")
    for item in profile["top_inclusive_project"][:22]:
        inc.add_row(item["frame"], f"{item['share']:.1%}", f"{item['us_per_report']}")
    console.print(inc)


# ---- report --------------------------------------------------------------------------------


@dataclass
class Results:
    reports: int
    sizes: dict[str, list[int]] = field(default_factory=dict)
    reference: list[dict[str, Any]] = field(default_factory=list)
    ours: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)

    def rates(self, runs: list[dict[str, Any]], key: str = "rate") -> list[float]:
        return [float(r[key]) for r in runs]

    @property
    def ratio(self) -> float:
        return statistics.median(self.rates(self.ours)) / statistics.median(
            self.rates(self.reference)
        )

    @property
    def flat_at(self) -> int:
        return max(1, self.reports // 5)

    def rss_at(self, run: dict[str, Any], decided: int) -> float:
        marks = {int(k): float(v) for k, v in run["rss_marks_mb"].items()}
        return marks.get(decided) or min(
            (v for k, v in marks.items() if k >= decided), default=float(run["rss_end_mb"])
        )

    def rss_ratios(self) -> list[float]:
        return [self.rss_at(r, self.reports) / self.rss_at(r, self.flat_at) for r in self.ours]

    def summary(self) -> dict[str, Any]:
        ours, ref = self.rates(self.ours), self.rates(self.reference)
        accepted = self.rates(self.ours, "accepted_rate")
        return {
            "report_bytes": {
                kind: {"median": int(statistics.median(s)), "min": min(s), "max": max(s)}
                for kind, s in self.sizes.items()
            },
            "reference_reports_per_s": {
                "runs": [round(r, 1) for r in ref],
                "median": round(statistics.median(ref), 1),
            },
            "ours_reports_per_s": {
                "runs": [round(r, 1) for r in ours],
                "median": round(statistics.median(ours), 1),
                "min": round(min(ours), 1),
                "max": round(max(ours), 1),
            },
            "ours_accepted_per_s": {
                "runs": [round(r, 1) for r in accepted],
                "median": round(statistics.median(accepted), 1),
            },
            "ours_decided_when_all_answered": [r["decided_when_all_answered"] for r in self.ours],
            "ours_decisions_per_s_after_intake": [
                round(r["decision_rate_after_intake"], 1) for r in self.ours
            ],
            "ratio_ours_to_reference": round(self.ratio, 4),
            "per_run_ratio": [round(o / r, 4) for o, r in zip(ours, ref, strict=True)],
            "cpu_us_per_report": [round(r["cpu_us_per_report"]) for r in self.ours],
            "postgres_cpu_us_per_report": [
                round(r["postgres_cpu_us_per_report"]) for r in self.ours
            ],
            "client_cpu_us_per_report": [round(r["client_cpu_us_per_report"]) for r in self.ours],
            "machine_cpu_busy": [r["machine_cpu_busy"] for r in self.ours],
            "other_processes_cpus": [r["other_cpu_share"] for r in self.ours],
            "reference_other_processes_cpus": [r["other_cpu_share"] for r in self.reference],
            "reference_cpu_us_per_report": [round(r["cpu_us_per_report"]) for r in self.reference],
            "reference_client_cpu_us_per_report": [
                round(r["client_cpu_us_per_report"]) for r in self.reference
            ],
            "rss_peak_mb": [r["rss_peak_mb"] for r in self.ours],
            "reference_rss_peak_mb": [r["rss_peak_mb"] for r in self.reference],
            f"rss_mb_after_{self.flat_at}": [self.rss_at(r, self.flat_at) for r in self.ours],
            f"rss_mb_after_{self.reports}": [self.rss_at(r, self.reports) for r in self.ours],
            "rss_ratio": [round(x, 3) for x in self.rss_ratios()],
            "targets": {
                f"reports/s >= {TARGET_RATE:.0f}": statistics.median(ours) >= TARGET_RATE,
                f"rss ratio <= {TARGET_RSS_RATIO}": max(self.rss_ratios()) <= TARGET_RSS_RATIO,
            },
            "checks": self.checks,
            "run_details": self.ours,
            "reference_details": self.reference,
            **({"profile": self.profile} if self.profile else {}),
        }


def report(results: Results, meta: dict[str, Any]) -> None:
    n = results.reports
    ours, ref = results.rates(results.ours), results.rates(results.reference)
    accepted = results.rates(results.ours, "accepted_rate")
    table = Table(
        title=f"Bounce reports into the inbound listener (PostgreSQL, nproc {meta['nproc']})"
    )
    table.add_column("measure")
    table.add_column("median", justify="right")
    table.add_column("min / max", justify="right")

    def row(label: str, values: list[float], fmt: str = "{:,.0f}") -> None:
        table.add_row(
            label,
            fmt.format(statistics.median(values)),
            f"{fmt.format(min(values))} / {fmt.format(max(values))}",
        )

    row(f"reference: bare aiosmtpd, reports/s ({n:,})", ref)
    row("listener: reports/s, first connection to all decided", ours)
    row("listener: reports/s answered 250 (stored)", accepted)
    row(
        "listener: decided when the last 250 went out",
        [r["decided_when_all_answered"] for r in results.ours],
    )
    row(
        "listener: decisions/s after that (nothing else to do)",
        [r["decision_rate_after_intake"] for r in results.ours],
    )
    row(
        "listener: PostgreSQL sessions opened",
        [r["postgres_sessions_opened"] for r in results.ours],
    )
    table.add_row("ratio listener / reference (medians)", f"{results.ratio:.3f}", "")
    for who, runs in (("listener", results.ours), ("reference", results.reference)):
        row(
            f"{who} run, CPU us per report: its server process"
            + (" and its reader process" if who == "listener" else ""),
            [r["cpu_us_per_report"] for r in runs],
        )
        row(
            f"{who} run, CPU us per report: PostgreSQL",
            [r["postgres_cpu_us_per_report"] for r in runs],
        )
        row(
            f"{who} run, CPU us per report: the client",
            [r["client_cpu_us_per_report"] for r in runs],
        )
        row(f"{who} run, machine CPU busy", [r["machine_cpu_busy"] for r in runs], "{:.0%}")
        row(
            f"{who} run, CPUs used by other processes",
            [r["other_cpu_share"] for r in runs],
            "{:.2f}",
        )
    row("listener RSS MiB when ready", [r["rss_ready_mb"] for r in results.ours], "{:.1f}")
    row(
        f"listener RSS MiB after {results.flat_at:,} decided",
        [results.rss_at(r, results.flat_at) for r in results.ours],
        "{:.1f}",
    )
    row(
        f"listener RSS MiB after {n:,} decided",
        [results.rss_at(r, n) for r in results.ours],
        "{:.1f}",
    )
    row(f"RSS({n:,}) / RSS({results.flat_at:,})", results.rss_ratios(), "{:.3f}")
    row(
        "listener peak RSS MiB (VmHWM, with its reader process)",
        [r["rss_peak_mb"] for r in results.ours],
        "{:.1f}",
    )
    row(
        "  of which the reader process",
        [r["helper_rss_peak_mb"] for r in results.ours],
        "{:.1f}",
    )
    row("reference peak RSS MiB (VmHWM)", [r["rss_peak_mb"] for r in results.reference], "{:.1f}")
    console.print(table)

    rss = Table(title="Listener RSS (MiB) as reports are decided, per run")
    rss.add_column("decided", justify="right")
    for i in range(len(results.ours)):
        rss.add_column(f"run {i + 1}", justify="right")
    steps = sorted({int(k) for r in results.ours for k in r["rss_marks_mb"]})
    for step in steps:
        rss.add_row(f"{step:,}", *(f"{results.rss_at(r, step):.1f}" for r in results.ours))
    console.print(rss)

    sizes = ", ".join(
        f"{kind} {statistics.median(s):,.0f} B ({min(s):,}-{max(s):,})"
        for kind, s in results.sizes.items()
    )
    console.print(f"report sizes (median, min-max): {sizes}")
    check = results.checks[-1] if results.checks else {}
    console.print(
        f"checked after each run: verdicts {check.get('verdicts')}; suppressions"
        f" {check.get('suppressions')}; deliveries {check.get('delivery_statuses')}"
    )
    console.print(
        f"{meta['runs']} run(s); {meta['connections']} connections, {meta['per_connection']}"
        f" reports per connection, MAIL FROM:<>; PostgreSQL {meta['postgresql']}"
    )
    shared = max(r["other_cpu_share"] for r in results.ours + results.reference)
    if shared > 0.2:
        console.print(
            f"warning: other processes used up to {shared:.2f} CPUs during the runs: the"
            " machine was shared, compare the ratios rather than the rates"
        )
    met = "met" if statistics.median(ours) >= TARGET_RATE else "NOT met"
    console.print(f"target: >= {TARGET_RATE:.0f} reports/s end to end: {met}")
    met = "met" if max(results.rss_ratios()) <= TARGET_RSS_RATIO else "NOT met"
    console.print(f"target: RSS({n:,}) <= {TARGET_RSS_RATIO} x RSS({results.flat_at:,}): {met}")
    if results.profile.get("samples"):
        print_profile(results.profile)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {**meta, **results.summary()}
    RESULTS.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(f"results written to {RESULTS.relative_to(ROOT)}")


# ---- main ----------------------------------------------------------------------------------


def bench(args: argparse.Namespace, work: Path) -> tuple[Results, dict[str, Any]]:
    n = args.reports
    settings = bench_settings()
    results = Results(n)
    meta: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "aiosmtplib": aiosmtplib.__version__,
        "reports": n,
        "runs": args.runs,
        "connections": args.connections,
        "per_connection": args.per_connection,
        "mix": dict(MIX),
        "postgresql": pg_recreate(PG_DATABASE),
    }
    clock = time.get_clock_info("perf_counter")
    if "CLOCK_MONOTONIC" not in clock.implementation:
        raise RuntimeError(
            f"perf_counter is {clock.implementation}: not one clock across processes"
        )
    mailer(bench_env(), "migrate", timeout=COMMAND_TIMEOUT)
    blocks = args.runs + (1 if args.profile else 0)
    with console.status(f"loading {blocks * n + BACKGROUND_CONTACTS:,} contacts and deliveries"):
        started = time.perf_counter()
        runs, sizes = load(settings, n, blocks)
        meta["load_s"] = round(time.perf_counter() - started, 1)
        meta["table_rows"] = sizes
    console.print(f"loaded in {meta['load_s']:.1f} s: {sizes}")

    log_path = work / "listener.log"
    for number, run in enumerate(runs, start=1):
        profiled = number > args.runs
        with console.status(f"writing {n:,} reports for run {number}"):
            reports = write_reports(settings, run, seed=number)
        for r in reports:
            results.sizes.setdefault(r.kind, []).append(len(r.data))
        label = "profiled run" if profiled else f"run {number}/{args.runs}"
        if not profiled:
            with console.status(f"{label}: reference (bare aiosmtpd)"):
                reference = asyncio.run(_measure("bare", reports, args, log_path))
            results.reference.append(reference)
        first_message = asyncio.run(_max_message_id())
        out = args.profile.resolve() if profiled else None
        sessions = asyncio.run(_sessions())
        with console.status(f"{label}: the listener, {n:,} reports"):
            measured = asyncio.run(_measure("ours", reports, args, log_path, out))
        time.sleep(0.6)  # PostgreSQL publishes session counts at most every 500 ms
        measured["postgres_sessions_opened"] = asyncio.run(_sessions()) - sessions
        check = asyncio.run(_check(run, reports, first_message))
        asyncio.run(_vacuum())
        if profiled:
            assert out is not None
            mode = "gil" if args.profile_gil else "wall"
            results.profile = summarise_profile(out, n, mode)
            results.profile.update(file=str(out), reports_per_s_under_profiler=measured["rate"])
            console.print(f"profiled run (not counted): {measured['rate']:,.0f} reports/s")
            continue
        results.ours.append(measured)
        results.checks.append(check)
        console.print(
            f"{label}: reference {reference['rate']:,.0f}/s; listener {measured['rate']:,.0f}"
            f" reports/s decided ({measured['seconds']:.1f} s; 250s at"
            f" {measured['accepted_rate']:,.0f}/s), {measured['cpu_us_per_report']:.0f} us CPU"
            f" per report, RSS {results.rss_at(measured, results.flat_at):.1f} ->"
            f" {results.rss_at(measured, n):.1f} MiB, peak {measured['rss_peak_mb']:.1f} MiB;"
            " checks passed"
        )
    return results, meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reports", type=int, default=10_000, help="reports per run")
    parser.add_argument("--runs", type=int, default=3, help="runs (median reported)")
    parser.add_argument("--connections", type=int, default=12, help="concurrent SMTP clients")
    parser.add_argument(
        "--per-connection", type=int, default=10, help="reports per SMTP connection"
    )
    parser.add_argument(
        "--profile", type=Path, help="one extra run under py-spy; raw stacks to this file"
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="profile only while the listener holds the GIL (its CPU), not its wall time",
    )
    parser.add_argument("--child", choices=("ours", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        # As `serve` runs it: uvicorn runs its app, and the listener in it, on uvloop.
        emit(asyncio.run(child_listen(args.child, args.expected)))
        return 0
    if min(args.reports, args.runs, args.connections, args.per_connection) < 1:
        parser.error("--reports, --runs, --connections and --per-connection must be positive")

    work = Path(tempfile.mkdtemp(prefix="mailer-bench-bounces-"))
    try:
        results, meta = bench(args, work)
    finally:
        pg_recreate(PG_DATABASE, drop_only=True)
        shutil.rmtree(work, ignore_errors=True)
    report(results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
