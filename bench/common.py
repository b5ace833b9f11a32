"""What the benchmarks share: where things are, the PostgreSQL server, realistic names."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
# `python bench/x.py` puts bench/ on sys.path, not the checkout: without this, `mailer` and
# `campaigns` would come from wherever the editable install points (another worktree, say).
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))
CONFIG = ROOT / "mailer.example.toml"
TEMPLATES = ROOT / "templates" / "email"

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
PG_ADMIN_DATABASE = "postgres"
SECRET = "bench-only-secret-key-0123456789-abcdefghijklmnop"  # noqa: S105 (benchmark only)

# fmt: off
FIRST_NAMES = (
    "An", "Bart", "Céline", "Dirk", "Els", "Femke", "Geert", "Hanne", "Ilse", "Jan", "Karel",
    "Lotte", "Marie", "Nathalie", "Olivier", "Pieter", "Quentin", "Ruben", "Sofie", "Thomas",
    "Ursula", "Vincent", "Wout", "Xavier", "Yasmine", "Zoë", "Amélie", "Benoît", "Chloé", "Noé",
)
LAST_NAMES = (
    "Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Claes", "Goossens",
    "Wouters", "De Smet", "Dubois", "Lambert", "Dupont", "Martin", "Simon", "Leclercq",
    "Van den Bossche", "Vermeulen", "Desmet", "Lemmens", "Hermans", "Michiels", "Renard",
)
# fmt: on
DOMAINS = ("example.be", "example.com", "example.fr", "example.nl", "example.org")
LOCALES = ("nl", "nl", "nl", "fr", "fr", "en")  # roughly the Belgian mix
WORDING = {
    "nl": "Ja, stuur mij de nieuwsbrief",
    "fr": "Oui, envoyez-moi la newsletter",
    "en": "Yes, send me the newsletter",
}


async def pg_connect(database: str, *, command_timeout: float = 300.0) -> Any:
    return await asyncpg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        database=database,
        timeout=30,
        command_timeout=command_timeout,
    )


async def _pg_admin(*statements: str) -> str:
    """Run `statements` on the maintenance database; return the server version."""
    conn = await pg_connect(PG_ADMIN_DATABASE)
    try:
        for sql in statements:
            await conn.execute(sql)
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def pg_recreate(database: str, drop_only: bool = False) -> str:
    """Drop (and create) a benchmark's database; return the server version."""
    drop = f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
    create = () if drop_only else (f'CREATE DATABASE "{database}"',)
    return asyncio.run(_pg_admin(drop, *create))


def pg_version() -> str:
    return asyncio.run(_pg_admin())


def mailer(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run `python -m mailer ARGS` to completion; return its stdout, fail loudly otherwise."""
    done = subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`mailer {' '.join(args)}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout
