"""Command line: `python -m mailer serve | worker | migrate | keys | users | check-config` and
the rest of API.md's list."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from campaigns.apikeys import SCOPES, create_key, list_keys, revoke_key
from campaigns.clock import SystemClock
from campaigns.config import ConfigError
from mailer.logs import configure_logging
from mailer.settings import Settings, redact_url

if TYPE_CHECKING:
    from mailer.delivery.dispatcher import Dispatcher
    from mailer.services import Services


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API and recipient pages")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument(
        "--with-worker",
        action="store_true",
        help="also run the scheduler and dispatcher in this process",
    )
    serve.add_argument(
        "--with-sink",
        metavar="DIR",
        help="start a local SMTP sink on MAILER_SMTP_HOST:PORT storing .eml files",
    )

    commands.add_parser("worker", help="run the scheduler and the dispatcher")
    campaigns = commands.add_parser("campaigns", help="campaign actions")
    campaign_commands = campaigns.add_subparsers(dest="campaigns_command", required=True)
    send = campaign_commands.add_parser("send", help="send a campaign now, with progress")
    send.add_argument("campaign_id")
    how = send.add_mutually_exclusive_group(required=True)
    how.add_argument("--now", action="store_true", help="start a run now, with a progress bar")
    how.add_argument(
        "--run",
        type=int,
        metavar="RUN_ID",
        help="help send an open run from this process (or host); exits when nothing is left",
    )

    contacts = commands.add_parser("contacts", help="a person's rights")
    contact_commands = contacts.add_subparsers(dest="contacts_command", required=True)
    erase = contact_commands.add_parser(
        "erase", help="erase a person by address (C33): only the suppression hash stays"
    )
    erase.add_argument("email")

    commands.add_parser(
        "processing-record", help="print the record of processing (art. 30) as Markdown"
    )
    retention = commands.add_parser(
        "retention", help="erase and delete what is past its retention period (C34) now"
    )
    retention.add_argument(
        "--dry-run", action="store_true", help="only say what would go, by reason"
    )
    commands.add_parser("migrate", help="apply database migrations (Alembic) up to head")
    commands.add_parser("check-config", help="validate environment and TOML file; name problems")

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key; it is printed once")
    create.add_argument("--scope", required=True, choices=SCOPES)
    create.add_argument("--name", required=True)
    key_commands.add_parser("list", help="list keys (never their secret part)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")

    users = commands.add_parser("users", help="staff accounts for the console (C39)")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    new_user = user_commands.add_parser(
        "create",
        help="create an account; the password is asked twice (or read from stdin with"
        " --password-stdin)",
    )
    new_user.add_argument("--email", required=True)
    new_user.add_argument("--role", required=True, choices=("marketer", "admin"))
    new_user.add_argument("--password-stdin", action="store_true")

    args = parser.parse_args(argv)
    configure_logging()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print("configuration problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2

    if args.command == "check-config":
        print(f"configuration OK (database {redact_url(settings.database_url)})")
        return 0
    if args.command == "migrate":
        from mailer.migrate import upgrade

        upgrade(settings.database_url)
        print("database migrated to head")
        return 0
    if args.command == "serve":
        if args.with_sink:
            from pathlib import Path

            from mailer.sink import start_sink

            start_sink(settings.smtp_host, settings.smtp_port, Path(args.with_sink))
            print(f"SMTP sink on {settings.smtp_host}:{settings.smtp_port} -> {args.with_sink}/")
        if args.with_worker:
            os.environ["MAILER_WITH_WORKER"] = "1"
        return _serve(settings, args.host, args.port, args.workers)
    if args.command == "worker":
        return asyncio.run(_worker(settings))
    if args.command == "campaigns":
        if args.run is not None:
            return asyncio.run(_help_send(settings, args.campaign_id, args.run))
        return asyncio.run(_send_now(settings, args.campaign_id))
    if args.command == "processing-record":
        from campaigns.rights.record import RelayInfo, as_markdown, processing_record

        relay = RelayInfo(settings.smtp_host, settings.smtp_tls, settings.dkim_selector)
        print(as_markdown(processing_record(settings.business, relay)), end="")
        return 0
    if args.command == "retention":
        return asyncio.run(_retention(settings, dry_run=args.dry_run))
    if args.command == "contacts":
        return asyncio.run(_erase(settings, args.email))
    if args.command == "keys":
        return asyncio.run(_keys(settings, args))
    if args.command == "users":
        return asyncio.run(_create_user(settings, args))
    parser.error(f"unknown command {args.command}")
    return 2


def _serve(settings: Settings, host: str, port: int, workers: int) -> int:
    import uvicorn

    from mailer.migrate import is_up_to_date

    if not is_up_to_date(settings.database_url):
        print("the database is not migrated: run `python -m mailer migrate`", file=sys.stderr)
        return 2
    uvicorn.run(
        "mailer.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        log_config=None,  # the service's own (mailer/logs.py), JSON lines when asked
        access_log=False,  # paths of recipient pages carry tokens
    )
    return 0


async def _worker(settings: Settings) -> int:
    from mailer.services import Services

    services = Services.build(settings)
    await services.start()
    worker = services.worker()
    await worker.start()
    print("worker running: scheduler and dispatcher (Ctrl-C stops)")
    try:
        await asyncio.Event().wait()
    finally:
        await worker.stop()
        await services.close()
    return 0


async def _retention(settings: Settings, *, dry_run: bool) -> int:
    """`retention [--dry-run]`: what is (or would be) erased and deleted, by reason, counts."""
    from campaigns.rights.retention import retention_due
    from mailer.scheduler import run_retention
    from mailer.services import Services

    services = Services.build(settings)
    try:
        if dry_run:
            due = await services.db.transaction(lambda s: retention_due(s, services.context))
        else:
            due = await run_retention(services.db, services.context)
    finally:
        await services.close()
    policy = settings.business.retention
    verb = "would go" if dry_run else "went"
    print(
        f"{verb}: {due.inactive_contacts} contacts without basis or activity for"
        f" {policy.inactive_contact_months} months (erased),"
        f" {due.old_deliveries} deliveries older than {policy.delivery_log_months} months,"
        f" {due.old_reports} bounce and complaint reports older than {policy.report_months}"
        f" months, {due.unconfirmed_signups} sign-ups unconfirmed after"
        f" {policy.unconfirmed_signup_days} days, {due.old_tracking_events} clicks and opens"
        f" older than {policy.tracking_months} months"
    )
    return 0


async def _erase(settings: Settings, email: str) -> int:
    """`contacts erase EMAIL`: the person's data goes; what went is printed as counts."""
    from campaigns.errors import DomainError
    from campaigns.rights.erasure import erase_address
    from mailer.services import Services

    services = Services.build(settings)
    try:
        erased = await services.db.transaction(
            lambda s: erase_address(s, email, ctx=services.context, channel="cli", actor="cli"),
            urgent=True,
        )
    except DomainError as exc:
        print(f"not erased: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await services.close()
    gone = ", ".join(f"{table} {n}" for table, n in sorted(erased.rows.items()) if n) or "nothing"
    print(f"erased ({gone}); the address stays suppressed, reason erasure")
    return 0


async def _send_now(settings: Settings, campaign_id: str) -> int:
    """`campaigns send ID --now`: start a run now and send it with a progress bar. With
    `[delivery] processes` above 1, helper processes share the run; the bar counts theirs too."""
    from datetime import UTC, datetime

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from campaigns.errors import DomainError
    from campaigns.sending.ledger import run_counts
    from campaigns.sending.lifecycle import start_run
    from campaigns.sending.states import ALLOWED_FROM, OPEN_DELIVERIES, Action
    from campaigns.sending.states import DeliveryStatus as D
    from mailer.delivery.dispatcher import send_run
    from mailer.services import Services

    services = Services.build(settings)
    dispatcher = await _sharing_dispatcher(services, beats=False)
    try:
        await services.start()
        now = datetime.now(UTC).replace(microsecond=0)
        try:
            run_id = await services.db.transaction(
                lambda s: start_run(
                    s, campaign_id, now, services.context, allowed=ALLOWED_FROM[Action.START_NOW]
                )
            )
        except DomainError as exc:
            print(exc.message, file=sys.stderr)
            return 2
        if run_id is None:
            print(
                "not started: the campaign is not a draft or scheduled, or a run of it is"
                " still open (resume or cancel it)",
                file=sys.stderr,
            )
            return 2

        async def counts() -> dict[str, int]:
            return await services.db.transaction(lambda s: run_counts(s, run_id))

        total = sum((await counts()).values())
        started = time.monotonic()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("sent {task.fields[sent]} failed {task.fields[failed]}"),
            TextColumn("{task.fields[rate]:.0f} msg/s"),
            TimeRemainingColumn(),
        ) as bar:
            task = bar.add_task("sending", total=total, sent=0, failed=0, rate=0.0)

            async def show(n: dict[str, int]) -> None:
                done = total - sum(n.get(status, 0) for status in OPEN_DELIVERIES)
                failed = n.get(D.FAILED, 0) + n.get(D.BOUNCED, 0)
                rate = n.get(D.SENT, 0) / max(time.monotonic() - started, 1e-6)
                bar.update(task, completed=done, sent=n.get(D.SENT, 0), failed=failed, rate=rate)

            async def refresh() -> None:  # from the database: every process's work counts
                while True:
                    await asyncio.sleep(0.5)
                    await show(await counts())

            refresher = asyncio.create_task(refresh())
            try:
                await send_run(dispatcher, campaign_id, run_id)
            finally:
                refresher.cancel()
            final = await counts()
            await show(final)
        elapsed = time.monotonic() - started
        sent, failed = final.get(D.SENT, 0), final.get(D.FAILED, 0) + final.get(D.BOUNCED, 0)
        print(
            f"run {run_id}: {sent} sent, {failed} failed, {final.get(D.SKIPPED, 0)} skipped,"
            f" {final.get(D.UNKNOWN, 0)} unknown, {final.get(D.QUEUED, 0)} queued for a retry;"
            f" {elapsed:.1f} s ({sent / max(elapsed, 1e-6):.0f} msg/s)"
        )
        return 0
    finally:
        await dispatcher.close()
        await services.close()


async def _sharing_dispatcher(services: Services, *, beats: bool) -> Dispatcher:
    """A dispatcher over a pool of its own that takes its part of the relay's limits beside
    the workers that beat: a helper's worker beats (and splits its part with its helpers),
    `send --now` does not, so it counts itself once more."""
    from campaigns.sending.senders import live_senders

    dispatcher = services.dispatcher()
    now = services.context.clock.now()
    live = await services.db.transaction(lambda s: live_senders(s, now))
    dispatcher.pool.share(live if beats else live + 1)
    return dispatcher


async def _help_send(settings: Settings, campaign_id: str, run_id: int) -> int:
    """`campaigns send ID --run RUN`: claim and send batches of an open run until nothing is
    left to claim now (retries are left to the process that started the run). SIGTERM
    finishes the batch in hand, then stops."""
    import signal

    from mailer.services import Services

    services = Services.build(settings)
    dispatcher = await _sharing_dispatcher(services, beats=True)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, dispatcher.stopping.set)
    try:
        progress = await dispatcher.run(campaign_id, run_id, wait_for_retries=False)
        print(f"run {run_id}: this process sent {progress.sent}, failed {progress.failed}")
        return 0
    finally:
        await dispatcher.close()
        await services.close()


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from campaigns.errors import DomainError
    from mailer.services import Services

    services = Services.build(settings)
    clock = SystemClock()
    try:
        if args.keys_command == "create":
            key, row = await services.db.transaction(
                lambda s: create_key(s, scope=args.scope, name=args.name, clock=clock)
            )
            print(key)
            print(
                f"(key id {row.id}, scope {row.scope}: store it now, it is not shown again)",
                file=sys.stderr,
            )
        elif args.keys_command == "list":
            for row in await services.db.transaction(list_keys):
                state = "revoked" if row.revoked_at else "active"
                print(
                    f"{row.id}  {row.scope:<8}  {state:<7}  {row.created_at:%Y-%m-%d}  {row.name}"
                )
        elif args.keys_command == "revoke":
            await services.db.transaction(lambda s: revoke_key(s, args.key_id, clock))
            print(f"revoked {args.key_id}")
    except DomainError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    finally:
        await services.close()
    return 0


async def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from campaigns.errors import DomainError
    from campaigns.staff import create_user
    from mailer.services import Services

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ", file=sys.stderr)
            return 2
    services = Services.build(settings)
    try:
        user = await services.db.transaction(
            lambda s: create_user(s, args.email, args.role, password, SystemClock())
        )
    except DomainError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    finally:
        await services.close()
    print(f"{user.role} {user.email} can log in at {settings.public_url}/console/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
