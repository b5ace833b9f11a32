"""Migrations (the same on SQLite and PostgreSQL) and the key-management command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from campaigns.apikeys import authenticate
from campaigns.models import Campaign, CampaignRun, RunDomainCount, metadata
from mailer.db import make_engine
from mailer.migrate import downgrade, head_revision, upgrade
from mailer.services import Services
from mailer.settings import Settings
from tests.conftest import (
    EXAMPLE_CONFIG,
    ROOT,
    TEST_SECRET,
    business_config,
    postgres_database,
    run_in_thread,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    with postgres_database(f"mailer_test_{os.getpid()}_fresh") as url:
        yield url


def schema_drift(url: str) -> list[object]:
    async def compare() -> list[object]:
        engine = make_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
        finally:
            await engine.dispose()

    return run_in_thread(compare)


def test_migrations_upgrade_downgrade_and_match_the_models(fresh_url):
    upgrade(fresh_url)
    assert schema_drift(fresh_url) == []
    downgrade(fresh_url, "base")
    upgrade(fresh_url)
    assert schema_drift(fresh_url) == []
    assert head_revision() is not None


def test_c37_migration_0017_counts_a_domain_once_under_its_a_labels(fresh_url):
    """Counts a report wrote under `bücher.be` and a handoff under `xn--bcher-kva.be` become
    one row; a limit resumed past under the old spelling keeps holding."""
    upgrade(fresh_url, "0016")
    at = datetime(2026, 12, 1, tzinfo=UTC)
    count = RunDomainCount.__table__  # type: ignore[attr-defined]
    zero = dict.fromkeys(("delivered", "hard_bounces", "soft_bounces", "complaints"), 0)
    rows = [
        {**zero, "run_id": 7, "domain": domain, "messages": messages, "blocks": blocks}
        for domain, messages, blocks in (
            ("bücher.be", 3, 2),
            ("xn--bcher-kva.be", 5, 1),
            ("münchen.de", 1, 0),
            ("example.be", 4, 0),
        )
    ]
    campaign = {"id": "c" * 32, "name": "n", "purpose": "newsletter", "subject": "s"}
    campaign.update(template="newsletter.html", status="sending", created_at=at, updated_at=at)
    run = {"id": 7, "campaign_id": "c" * 32, "scheduled_for": at, "started_at": at}
    run.update(status="sending", guard_tripped="blocks:bücher.be,complaints")

    async def seed() -> None:
        engine = make_engine(fresh_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(sa.insert(Campaign.__table__), [campaign])  # type: ignore[attr-defined]
                await connection.execute(sa.insert(CampaignRun.__table__), [run])  # type: ignore[attr-defined]
                await connection.execute(sa.insert(count), rows)
        finally:
            await engine.dispose()

    async def read() -> tuple[dict[str, tuple[int, int]], str | None]:
        engine = make_engine(fresh_url)
        try:
            async with engine.connect() as connection:
                found = await connection.execute(
                    sa.select(count.c.domain, count.c.messages, count.c.blocks)
                )
                tripped = await connection.scalar(
                    sa.select(CampaignRun.guard_tripped).where(CampaignRun.id == 7)
                )
                return {d: (m, b) for d, m, b in found.all()}, tripped
        finally:
            await engine.dispose()

    run_in_thread(seed)
    upgrade(fresh_url)
    counts, tripped = run_in_thread(read)
    assert counts == {"xn--bcher-kva.be": (8, 3), "xn--mnchen-3ya.de": (1, 0), "example.be": (4, 0)}
    assert tripped == "blocks:xn--bcher-kva.be,complaints"


def cli(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MAILER_DATABASE_URL": url,
        "MAILER_CONFIG": str(EXAMPLE_CONFIG),
        "MAILER_SECRET_KEYS": TEST_SECRET.decode(),
        "MAILER_PUBLIC_URL": "https://mail.example.be",
    }
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_keys_create_list_revoke(fresh_url):
    assert cli(fresh_url, "migrate").returncode == 0
    created = cli(fresh_url, "keys", "create", "--scope", "shop", "--name", "webshop")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("mk_") and len(key) > 40
    assert "not shown again" in created.stderr

    listed = cli(fresh_url, "keys", "list")
    key_id = key.split("_")[1]
    assert key_id in listed.stdout and "shop" in listed.stdout and "active" in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout

    async def check(presented: str) -> str | None:
        services = Services.build(Settings(business=business_config(), database_url=fresh_url))
        try:
            async with services.db.sessions() as session:
                row = await authenticate(session, presented)
                return None if row is None else row.scope
        finally:
            await services.close()

    assert run_in_thread(lambda: check(key)) == "shop"
    assert cli(fresh_url, "keys", "revoke", key_id).returncode == 0
    assert run_in_thread(lambda: check(key)) is None
    assert "revoked" in cli(fresh_url, "keys", "list").stdout

    bad_scope = cli(fresh_url, "keys", "create", "--scope", "root", "--name", "x")
    assert bad_scope.returncode == 2


def test_serve_refuses_an_unmigrated_database(fresh_url):
    result = cli(fresh_url, "serve", "--port", "0")
    assert result.returncode == 2
    assert "not migrated" in result.stderr
