"""The API's response models mirror the domain's own types field for field (the controllers
build one from the other with `model_validate(..., from_attributes=True)`): a field added to
one side only would be dropped from the answer, or fail at run time. This holds the pairs."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel

from campaigns.audience.audience import AudienceCounts, BasisEvidence, Explanation
from campaigns.audience.eligibility import Basis
from campaigns.evidence.contacts import Refusal
from campaigns.evidence.profiles import (
    ConsentEventView,
    ContactDetail,
    ContactSource,
    ContactView,
    OrderView,
    RecordedConsent,
)
from campaigns.returns.reputation import DomainCounts, Reputation
from campaigns.returns.review import ReviewItem
from campaigns.sending.campaigns import CampaignDetail, CampaignView, DeliveryCounts
from campaigns.suppression.entries import SuppressionEntry, SuppressionStatus
from mailer.web import schemas

PAIRS: list[tuple[type[BaseModel], type]] = [
    (schemas.SourceOut, ContactSource),
    (schemas.RefusedOut, Refusal),
    (schemas.BasisOut, Basis),
    (schemas.ContactOut, ContactView),
    (schemas.ContactDetailOut, ContactDetail),
    (schemas.ConsentEventOut, ConsentEventView),
    (schemas.OrderOut, OrderView),
    (schemas.ConsentOut, RecordedConsent),
    (schemas.DeliveryCountsOut, DeliveryCounts),
    (schemas.AudienceOut, AudienceCounts),
    (schemas.CampaignOut, CampaignView),
    (schemas.CampaignDetailOut, CampaignDetail),
    (schemas.WhyBasisOut, BasisEvidence),
    (schemas.WhyOut, Explanation),
    (schemas.SuppressionEntryOut, SuppressionEntry),
    (schemas.SuppressionStatusOut, SuppressionStatus),
    (schemas.DomainCountsOut, DomainCounts),
    (schemas.ReputationOut, Reputation),
    (schemas.ReviewItemOut, ReviewItem),
]


@pytest.mark.parametrize(("model", "domain"), PAIRS, ids=[m.__name__ for m, _ in PAIRS])
def test_a_response_model_has_the_fields_of_its_domain_type(model, domain):
    domain_fields = {f.name for f in dataclasses.fields(domain)}
    assert set(model.model_fields) == domain_fields
