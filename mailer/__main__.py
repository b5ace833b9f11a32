"""Command line: `python -m mailer serve | migrate | keys | check-config`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from campaigns.apikeys import SCOPES, create_key, list_keys, revoke_key
from campaigns.clock import SystemClock
from campaigns.config import ConfigError
from mailer.settings import Settings, redact_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API and recipient pages")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

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

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
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
        return _serve(settings, args.host, args.port, args.workers)
    if args.command == "keys":
        return asyncio.run(_keys(settings, args))
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
        access_log=False,  # paths of recipient pages carry tokens
    )
    return 0


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from campaigns.errors import DomainError
    from mailer.services import Services

    services = Services.build(settings)
    clock = SystemClock()
    try:
        if args.keys_command == "create":
            key, row = await services.transaction(
                lambda s: create_key(s, scope=args.scope, name=args.name, clock=clock)
            )
            print(key)
            print(
                f"(key id {row.id}, scope {row.scope}: store it now, it is not shown again)",
                file=sys.stderr,
            )
        elif args.keys_command == "list":
            for row in await services.transaction(list_keys):
                state = "revoked" if row.revoked_at else "active"
                print(
                    f"{row.id}  {row.scope:<8}  {state:<7}  {row.created_at:%Y-%m-%d}  {row.name}"
                )
        elif args.keys_command == "revoke":
            await services.transaction(lambda s: revoke_key(s, args.key_id, clock))
            print(f"revoked {args.key_id}")
    except DomainError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    finally:
        await services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
