"""Marketers' API: campaign records, their audience, and why a contact is (not) in it."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody

from campaigns.campaigns import (
    audience_counts,
    campaign_detail,
    create_campaign,
    explain,
    list_campaigns,
    load_target,
)
from campaigns.schemas import AudienceOut, CampaignDetailOut, CampaignIn, CampaignOut, WhyOut
from mailer.services import Services
from mailer.web.errors import responses


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
    async def create(self, data: JSONBody[CampaignIn], state: State) -> CampaignOut:
        services: Services = state.services
        return await services.transaction(
            lambda s: create_campaign(s, data, services.context, services.settings.templates_dir)
        )

    @get(
        "/campaigns",
        summary="All campaigns with their delivery counts",
        responses=responses(401, 403),
    )
    async def list_all(self, state: State) -> list[CampaignOut]:
        services: Services = state.services
        return await services.transaction(list_campaigns)

    @get(
        "/campaigns/{campaign_id:str}",
        summary="A campaign with delivery counts and its audience now",
        responses=responses(401, 403, 404),
    )
    async def detail(self, campaign_id: FromPath[str], state: State) -> CampaignDetailOut:
        services: Services = state.services
        return await services.transaction(
            lambda s: campaign_detail(s, campaign_id, services.context)
        )

    @get(
        "/campaigns/{campaign_id:str}/audience",
        summary="Eligible contacts by basis, excluded ones by reason",
        responses=responses(401, 403, 404),
    )
    async def audience(self, campaign_id: FromPath[str], state: State) -> AudienceOut:
        services: Services = state.services

        async def work(session) -> AudienceOut:  # type: ignore[no-untyped-def]
            _, target = await load_target(session, campaign_id)
            return await audience_counts(session, target, services.context)

        return await services.transaction(work)

    @get(
        "/contacts/{contact_id:str}/why",
        summary="The basis that lets this contact receive the campaign, or why it does not",
        responses=responses(401, 403, 404, 422),
    )
    async def why(
        self, contact_id: FromPath[str], campaign_id: FromQuery[str], state: State
    ) -> WhyOut:
        services: Services = state.services
        return await services.transaction(
            lambda s: explain(s, contact_id, campaign_id, services.context)
        )
