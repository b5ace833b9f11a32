"""Marketers' API: campaign records, their audience, and why a contact is (not) in it."""

from __future__ import annotations

from email import message_from_bytes, policy
from functools import partial
from typing import Any

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.audience.audience import AudienceCounts, audience_counts, explain, load_target
from campaigns.context import Context
from campaigns.errors import InvalidInput
from campaigns.sending import lifecycle
from campaigns.sending.campaigns import (
    CampaignDetail,
    campaign_detail,
    campaign_runs,
    create_campaign,
    list_campaigns,
)
from campaigns.sending.inputs import CampaignIn
from campaigns.tracking import CampaignClicks, campaign_clicks
from mailer.db import Database
from mailer.delivery.preview import compose_preview, sample_recipient
from mailer.web.deps import ComposersDep, CronParserDep, CtxDep, DbDep, TemplatesDep, TransportDep
from mailer.web.errors import responses
from mailer.web.schemas import (
    AudienceOut,
    CampaignDetailOut,
    CampaignOut,
    ClicksOut,
    PreviewIn,
    PreviewOut,
    RunOut,
    ScheduleIn,
    TestSendIn,
    TestSendOut,
    WhyOut,
)


class CampaignController(Controller):
    path = "/api/v1"
    tags = ["marketers"]
    opt = {"scope": "marketer"}

    @post(
        "/campaigns",
        status_code=201,
        summary="Create a campaign (a draft)",
        responses=responses(401, 403, 413, 422),
    )
    async def create(
        self, data: JSONBody[CampaignIn], db: DbDep, ctx: CtxDep, templates: TemplatesDep
    ) -> CampaignOut:
        view = await db.transaction(lambda s: create_campaign(s, data, ctx, templates))
        return CampaignOut.model_validate(view, from_attributes=True)

    @get(
        "/campaigns",
        summary="All campaigns with their delivery counts",
        responses=responses(401, 403),
    )
    async def list_all(self, db: DbDep) -> list[CampaignOut]:
        views = await db.transaction(list_campaigns)
        return [CampaignOut.model_validate(view, from_attributes=True) for view in views]

    @get(
        "/campaigns/{campaign_id:str}",
        summary="A campaign with delivery counts and its audience now",
        responses=responses(401, 403, 404),
    )
    async def detail(self, campaign_id: FromPath[str], db: DbDep, ctx: CtxDep) -> CampaignDetailOut:
        detail = await db.transaction(lambda s: campaign_detail(s, campaign_id, ctx))
        return CampaignDetailOut.model_validate(detail, from_attributes=True)

    @get(
        "/campaigns/{campaign_id:str}/runs",
        summary="The campaign's runs: one per firing, with counts and the processes that sent",
        responses=responses(401, 403, 404),
    )
    async def runs(self, campaign_id: FromPath[str], db: DbDep) -> list[RunOut]:
        views = await db.transaction(lambda s: campaign_runs(s, campaign_id))
        return [RunOut.model_validate(view, from_attributes=True) for view in views]

    @get(
        "/campaigns/{campaign_id:str}/audience",
        summary="Eligible contacts by basis, excluded ones by reason",
        responses=responses(401, 403, 404),
    )
    async def audience(self, campaign_id: FromPath[str], db: DbDep, ctx: CtxDep) -> AudienceOut:

        async def work(session) -> AudienceCounts:  # type: ignore[no-untyped-def]
            _, target = await load_target(session, campaign_id)
            return await audience_counts(session, target, ctx)

        counts = await db.transaction(work)
        return AudienceOut.model_validate(counts, from_attributes=True)

    @post(
        "/campaigns/{campaign_id:str}/schedule",
        status_code=200,
        summary="Schedule once (send_at) or recurring (cron, timezone)",
        responses=responses(401, 403, 404, 409, 413, 422),
    )
    async def schedule(
        self,
        campaign_id: FromPath[str],
        data: JSONBody[ScheduleIn],
        db: DbDep,
        ctx: CtxDep,
        parse_cron: CronParserDep,
    ) -> CampaignOut:
        return await self._change(
            db,
            ctx,
            campaign_id,
            partial(
                lifecycle.schedule,
                send_at=data.send_at,
                cron=data.cron,
                timezone=data.timezone,
                parse_cron=parse_cron,
            ),
        )

    @post(
        "/campaigns/{campaign_id:str}/pause",
        status_code=200,
        summary="Pause sending",
        responses=responses(401, 403, 404, 409),
    )
    async def pause(self, campaign_id: FromPath[str], db: DbDep, ctx: CtxDep) -> CampaignOut:
        return await self._change(db, ctx, campaign_id, lifecycle.pause)

    @post(
        "/campaigns/{campaign_id:str}/resume",
        status_code=200,
        summary="Resume where it stopped",
        responses=responses(401, 403, 404, 409),
    )
    async def resume(self, campaign_id: FromPath[str], db: DbDep, ctx: CtxDep) -> CampaignOut:
        return await self._change(db, ctx, campaign_id, lifecycle.resume)

    @post(
        "/campaigns/{campaign_id:str}/cancel",
        status_code=200,
        summary="Cancel: nothing more is sent",
        responses=responses(401, 403, 404, 409),
    )
    async def cancel(self, campaign_id: FromPath[str], db: DbDep, ctx: CtxDep) -> CampaignOut:
        return await self._change(db, ctx, campaign_id, lifecycle.cancel)

    async def _change(
        self, db: Database, ctx: Context, campaign_id: str, action: Any
    ) -> CampaignOut:
        async def work(session: AsyncSession) -> CampaignDetail:
            await action(session, campaign_id, ctx=ctx)
            return await campaign_detail(session, campaign_id, ctx)

        # Urgent: a pause while the campaign sends goes before its next handoff (SQLite).
        detail = await db.transaction(work, urgent=True)
        return CampaignOut.model_validate(detail, from_attributes=True)

    @post(
        "/campaigns/{campaign_id:str}/preview",
        status_code=200,
        summary="The message exactly as a contact would receive it (or a sample contact)",
        responses=responses(401, 403, 404, 409, 422),
    )
    async def preview(
        self,
        campaign_id: FromPath[str],
        data: JSONBody[PreviewIn],
        db: DbDep,
        ctx: CtxDep,
        composers: ComposersDep,
    ) -> PreviewOut:
        composed = await db.transaction(
            lambda s: compose_preview(s, composers, ctx, campaign_id, data.contact_id)
        )
        message = message_from_bytes(composed.data, policy=policy.default)
        html = message.get_body(("html",))
        text = message.get_body(("plain",))
        return PreviewOut(
            subject=str(message["Subject"]),
            html=html.get_content() if html else "",
            text=text.get_content() if text else "",
            headers={
                name: str(value)
                for name, value in message.items()
                if not name.lower().startswith("content-")
            },
        )

    @post(
        "/campaigns/{campaign_id:str}/test",
        status_code=202,
        summary="Send the campaign to addresses on the internal test list only",
        responses=responses(401, 403, 404, 413, 422),
    )
    async def test_send(
        self,
        campaign_id: FromPath[str],
        data: JSONBody[TestSendIn],
        db: DbDep,
        ctx: CtxDep,
        composers: ComposersDep,
        transport: TransportDep,
    ) -> TestSendOut:
        allowed = set(ctx.config.marketing.test_addresses)
        for i, raw in enumerate(data.emails):
            if raw.strip().lower() not in allowed:
                raise InvalidInput(
                    f"'{raw}' is not on the internal test list ([marketing] test_addresses)",
                    field=f"emails[{i}]",
                    reason="not_a_test_address",
                )
        campaign, _ = await db.transaction(lambda s: load_target(s, campaign_id))
        composer = composers.for_campaign(campaign)
        sent = []
        for raw in data.emails:
            email = raw.strip().lower()
            await transport.send(composer.compose(sample_recipient(email)))
            sent.append(email)
        return TestSendOut(sent=sent)

    @get(
        "/campaigns/{campaign_id:str}/clicks",
        summary="Clicks per link, aggregate for everyone; opens (tracking with consent, C35)",
        responses=responses(401, 403, 404),
    )
    async def clicks(self, campaign_id: FromPath[str], db: DbDep) -> ClicksOut:
        async def work(session: AsyncSession) -> CampaignClicks:
            await load_target(session, campaign_id)  # 404 for an unknown campaign
            return await campaign_clicks(session, campaign_id)

        found = await db.transaction(work)
        return ClicksOut.model_validate(found, from_attributes=True)

    @get(
        "/contacts/{contact_id:str}/why",
        summary="The basis that lets this contact receive the campaign, or why it does not",
        responses=responses(401, 403, 404, 422),
    )
    async def why(
        self, contact_id: FromPath[str], campaign_id: FromQuery[str], db: DbDep, ctx: CtxDep
    ) -> WhyOut:
        why = await db.transaction(lambda s: explain(s, contact_id, campaign_id, ctx))
        return WhyOut.model_validate(why, from_attributes=True)
