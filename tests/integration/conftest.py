"""Fixtures of the return channel, shared by its tests and the rights tests: a service with
fast delivery settings and low reputation limits (`world`), and the real inbound listener on a
free port (`listener`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, async_playwright

from mailer.app import create_app
from mailer.inbound import start_listener
from mailer.services import Services
from tests.integration.test_dispatch import FAST
from tests.smtp import free_port


def with_business(settings, **sections):
    business = settings.business
    for name, changes in sections.items():
        business = dataclasses.replace(
            business, **{name: dataclasses.replace(getattr(business, name), **changes)}
        )
    return dataclasses.replace(settings, business=business)


@pytest.fixture
def return_settings(settings):
    return with_business(
        settings,
        delivery=FAST,
        reputation={"min_delivered": 5, "min_domain_messages": 4},
    )


@pytest.fixture
async def world(return_settings, clock, services):
    fast = Services.build(return_settings, clock)
    yield fast
    await fast.close()


@pytest.fixture
async def listener(world):
    handler = world.inbound_handler()
    port = free_port()
    server = await start_listener(handler, "127.0.0.1", port)
    yield handler, port
    await server.close()


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """`app` served by a real uvicorn on a free port: its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    instance = uvicorn.Server(config)
    task = asyncio.create_task(instance.serve())
    for _ in range(200):
        if instance.started:
            break
        await asyncio.sleep(0.025)
    assert instance.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    await asyncio.wait_for(task, 20)


@pytest.fixture
async def server(settings, clock, services) -> AsyncIterator[str]:
    """The app served by a real uvicorn on a free port: its base URL."""
    async with served(create_app(settings, clock=clock)) as url:
        yield url


CHROMIUM = "/usr/bin/chromium"  # Debian's: a test tool's own browser download fails here
HAVE_CHROMIUM = Path(CHROMIUM).exists()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert HAVE_CHROMIUM, "install Debian's chromium (.ci/run does)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        await browser.close()
