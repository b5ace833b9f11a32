"""The reference of bench/oneclick.py: a bare Litestar endpoint that commits one INSERT per
request into the same PostgreSQL, with the service's own engine settings (mailer/db.py), so
that the two differ only by what the service does for an objection."""

from __future__ import annotations

import os

import sqlalchemy as sa
from litestar import Litestar, MediaType, post

from mailer.db import make_engine

HIT = sa.table("bare_hit", sa.column("token", sa.Text))


def app_from_env() -> Litestar:
    engine = make_engine(os.environ["MAILER_DATABASE_URL"])

    @post("/u/{token:str}", status_code=200, media_type=MediaType.TEXT)
    async def hit(token: str) -> str:
        async with engine.begin() as connection:
            await connection.execute(sa.insert(HIT).values(token=token))
        return "ok"

    async def close() -> None:
        await engine.dispose()

    return Litestar(route_handlers=[hit], on_shutdown=[close])
