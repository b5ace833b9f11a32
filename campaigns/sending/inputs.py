"""What a marketer sends to make a campaign, validated (the domain's command; the API takes it
as it is)."""

from __future__ import annotations

from pydantic import Field, field_validator

from campaigns.validation import StrictInput, normal_locale, single_line


# A draft as the marketer sends it; check_campaign checks it against the configuration.
class CampaignIn(StrictInput):
    name: str = Field(min_length=1, max_length=200)
    purpose: str = Field(min_length=1, max_length=64)
    categories: list[str] = Field(default_factory=list, max_length=20)
    subject: str = Field(min_length=1, max_length=300)
    template: str = Field(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9_-]*\.html$")
    locale: str | None = Field(default=None, max_length=16)

    _normal_locale = field_validator("locale")(normal_locale)

    @field_validator("subject", "name")
    @classmethod
    def _one_line_text(cls, value: str) -> str:
        return single_line(value, "this field") or value
