"""The web entry point: `create_app(settings)` serves what `mailer/services.py` wires."""

from __future__ import annotations

import logging
import os

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    Reference,
    SecurityScheme,
)

from campaigns.clock import Clock
from campaigns.rights.record import RelayInfo
from mailer.inbound import Listener, start_listener
from mailer.logs import configure_logging
from mailer.services import Services
from mailer.settings import Settings
from mailer.web.auth import require_scope
from mailer.web.campaigns import CampaignController
from mailer.web.console import ConsoleController
from mailer.web.console_campaigns import ConsoleCampaigns
from mailer.web.console_people import ConsolePeople
from mailer.web.contacts import ContactController
from mailer.web.errors import exception_handlers
from mailer.web.inputs import refuse_unstorable_text
from mailer.web.operations import OperationsController, Readiness
from mailer.web.pages import OneClickParts, RecipientPages
from mailer.web.returns import RelayEvents, ReviewQueue
from mailer.web.rights import RightsController, get_processing_record
from mailer.web.suppressions import SuppressionController
from mailer.web.tracking import TrackingController

MAX_BODY = 1024 * 1024  # API.md: bodies over 1 MiB get 413

log = logging.getLogger("mailer")


@get("/healthz", summary="Liveness (as /health; kept for existing probes)", tags=["operations"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_app(
    settings: Settings, *, clock: Clock | None = None, with_worker: bool = False
) -> Litestar:
    """The web app over the objects `Services.build` wires; each controller gets the parts it
    uses injected by parameter name (mailer/web/deps.py)."""
    services = Services.build(settings, clock)
    worker = services.worker() if with_worker else None
    listener: list[Listener] = []

    async def start() -> None:
        await services.start()
        if settings.inbound_port:
            listener.append(
                await start_listener(
                    services.inbound_handler(), settings.inbound_host, settings.inbound_port
                )
            )
        if worker is not None:
            await worker.start()

    async def close() -> None:
        if worker is not None:
            await worker.stop()
        for server in listener:
            await server.close()
        await services.close()

    def provide(value: object) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    app = Litestar(
        route_handlers=[
            ContactController,
            CampaignController,
            SuppressionController,
            RelayEvents,
            ReviewQueue,
            RightsController,
            get_processing_record,
            RecipientPages,
            ConsoleController,
            ConsoleCampaigns,
            ConsolePeople,
            TrackingController,
            OperationsController,
            healthz,
        ],
        guards=[require_scope],
        middleware=[refuse_unstorable_text],
        exception_handlers=exception_handlers,
        request_max_body_size=MAX_BODY,
        # Guards and exception handlers take no dependencies: they read these.
        state=State(
            {"db": services.db, "dev_mode": settings.dev_mode, "console": services.console}
        ),
        dependencies={
            "db": provide(services.db),
            "ctx": provide(services.context),
            "signer": provide(services.signer),
            "notices": provide(services.notices),
            "acknowledger": provide(services.acknowledger),
            "one_click": provide(
                OneClickParts(services.signer, services.pages, services.objections)
            ),
            "pages": provide(services.pages),
            "console": provide(services.console),
            "composers": provide(services.composers),
            "transport": provide(services.transport),
            "templates": provide(settings.templates_dir),
            "parse_cron": provide(services.parse_cron),
            "readiness": provide(
                Readiness(
                    bool(settings.inbound_port),
                    lambda: (
                        any(listener) and all(server.server.is_serving() for server in listener)
                    ),
                )
            ),
            "relay": provide(
                RelayInfo(settings.smtp_host, settings.smtp_tls, settings.dkim_selector)
            ),
        },
        on_startup=[start],
        on_shutdown=[close],
        openapi_config=OpenAPIConfig(
            title="Permission-first mailer",
            version="1",
            description="Sends marketing email only to people it may legally mail.",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="mk_...")
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
        logging_config=None,  # the service's own (mailer/logs.py): text, or JSON lines
    )
    _document_statuses(app)
    return app


def _document_statuses(app: Litestar) -> None:
    """Litestar documents body validation as 400; this service answers 422 for it and keeps 400
    for a body that is not JSON at all. And an answer with no body (204, a redirect) has no
    content type. Say so in the OpenAPI document."""
    malformed = OpenAPIResponse(
        description="Malformed body (not JSON)",
        content={
            "application/json": OpenAPIMediaType(schema=Reference("#/components/schemas/ErrorOut"))
        },
    )
    for path_item in (app.openapi_schema.paths or {}).values():
        for method in ("get", "head", "post", "put", "patch", "delete"):
            operation = getattr(path_item, method, None)
            if operation is None or not operation.responses:
                continue
            if "400" in operation.responses:
                operation.responses["400"] = malformed
            for code in ("204", "302"):
                answer = operation.responses.get(code)
                if isinstance(answer, OpenAPIResponse):
                    answer.content = None


def app_from_env() -> Litestar:
    """Factory for uvicorn (`serve`): settings from the environment, checked at start. Each
    worker process of `serve --workers N` runs it: its logging is set up here too."""
    configure_logging()
    return create_app(Settings.from_env(), with_worker=os.environ.get("MAILER_WITH_WORKER") == "1")
