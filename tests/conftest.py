"""Shared fixtures: a real database per backend (SQLite file, PostgreSQL database of our own),
migrated with the real `python -m mailer migrate`, an app wired by `create_app`, and API keys.

PostgreSQL is not optional: if it cannot be reached, the PostgreSQL half of the suite errors
instead of being skipped (`.ci/run` starts the server first).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from campaigns.apikeys import create_key
from campaigns.clock import FixedClock
from campaigns.config import parse_business_config
from campaigns.models import metadata
from mailer.app import create_app
from mailer.services import Services
from mailer.settings import Settings
from tests.smtp import RecordingHandler, SmtpServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "mailer.example.toml"
PG_SERVER = os.environ.get("MAILER_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
TEST_SECRET = b"test-secret-key-0123456789abcdef-0123456789"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BACKENDS = ("sqlite", "postgresql")

T = TypeVar("T")


def run_in_thread(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop (sync fixtures, outside the test loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def business_config() -> Any:
    return parse_business_config(tomllib.loads(EXAMPLE_CONFIG.read_text()))


def migrate(database_url: str) -> None:
    """Apply the migrations through the real command line, as an operator would."""
    env = {
        **os.environ,
        "MAILER_DATABASE_URL": database_url,
        "MAILER_CONFIG": str(EXAMPLE_CONFIG),
        "MAILER_SECRET_KEYS": TEST_SECRET.decode(),
        "MAILER_DEV": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "mailer", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A PostgreSQL database of our own (dropped first if a killed run left it, and after)."""

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(f"{PG_SERVER}/postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    run_in_thread(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    run_in_thread(lambda: admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    finally:
        run_in_thread(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_database(f"mailer_test_{os.getpid()}") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'mailer.db'}"
    migrate(url)
    return url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """Every integration test runs on SQLite and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    """One real SMTP server (aiosmtpd) for the session; `smtp` resets it per test."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> RecordingHandler:
    handler = smtp_server.handler
    handler.reset()
    return handler


@pytest.fixture
def settings(database_url: str, smtp_server: SmtpServer) -> Settings:
    return Settings(
        business=business_config(),
        database_url=database_url,
        secret_keys=(TEST_SECRET,),
        public_url="https://mailer.example.test",
        dev_mode=True,
        templates_dir=ROOT / "templates" / "email",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        inbound_port=0,  # tests of the listener give it a port
    )


async def empty_tables(services: Services) -> None:
    async with services.db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            await connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                await connection.execute(table.delete())
    journal = services.db.engine.url.database
    if services.db.engine.dialect.name == "sqlite" and journal:
        with (
            contextlib.suppress(sqlite3.OperationalError),  # the wire journal's own file
            contextlib.closing(sqlite3.connect(f"{journal}-wire")) as wire,
        ):
            wire.execute("DELETE FROM wire_log")
            wire.commit()


@pytest.fixture
async def services(settings: Settings, clock: FixedClock) -> AsyncIterator[Services]:
    """The test's own engine and domain context (the app runs its server on another event
    loop, so the two never share pooled connections). Tables start empty."""
    services = Services.build(settings, clock)
    await empty_tables(services)
    yield services
    await services.close()


@pytest.fixture
async def app_client(
    settings: Settings, clock: FixedClock, services: Services
) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(settings, clock=clock)
    async with AsyncTestClient(app=app, base_url="https://mailer.example.test") as client:
        yield client


@pytest.fixture
async def keys(services: Services, clock: FixedClock) -> dict[str, dict[str, str]]:
    """Authorization headers per scope."""
    headers = {}
    for scope in ("shop", "marketer", "relay", "admin"):
        key, _ = await services.db.transaction(
            lambda s, scope=scope: create_key(s, scope=scope, name=f"test {scope}", clock=clock)
        )
        headers[scope] = {"Authorization": f"Bearer {key}"}
    return headers
