"""Business configuration: sender identity, marketing policy, retention, category similarity.

Parsed from the TOML file's mapping. Every problem is collected (not just the first), so
`python -m mailer check-config` can name them all at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from email_validator import EmailNotValidError, validate_email

SUPPORTED_LOCALES = ("nl", "fr", "en")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")

DEFAULT_PURPOSES = ("newsletter", "promotions", "partner_offers", "tracking")


@dataclass(frozen=True)
class SenderIdentity:
    legal_name: str
    address: str
    enterprise_number: str
    contact_email: str
    from_email: str
    from_name: str
    privacy_url: str
    mail_domain: str
    default_locale: str = "nl"


@dataclass(frozen=True)
class FrequencyCap:
    max: int = 2
    days: int = 7


@dataclass(frozen=True)
class MarketingPolicy:
    purposes: tuple[str, ...] = DEFAULT_PURPOSES
    third_party_purposes: frozenset[str] = frozenset({"partner_offers"})
    soft_opt_in_months: int = 24
    frequency_cap: FrequencyCap = field(default_factory=FrequencyCap)
    soft_bounce_limit: int = 3
    test_addresses: tuple[str, ...] = ()
    acknowledge_opt_outs: bool = True  # C15: one mail without advertising confirms an opt-out


@dataclass(frozen=True)
class RetentionPolicy:
    inactive_contact_months: int = 36  # contacts with no basis and no activity (C34)
    delivery_log_months: int = 24  # deliveries; at least 12, as unsubscribe links work (C24)
    report_months: int = 6  # bounce and complaint reports, raw
    unconfirmed_signup_days: int = 30  # a sign-up never confirmed (C5)
    tracking_months: int = 13  # clicks and opens of people who consented to tracking (C35)


@dataclass(frozen=True)
class CategoryMap:
    """Which product categories are similar (rule C8). A category is always similar to itself."""

    similar: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(self.similar)

    def similar_to(self, category: str) -> frozenset[str]:
        return self.similar.get(category, frozenset()) | {category}


LANGUAGES = ("nl", "fr", "en")  # the languages of mails and pages
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f]")  # and other control characters


@dataclass(frozen=True)
class CategoryNames:
    """How a product category is named to a person, per language (footers, pages): "thee",
    not the key `tea`. A category without a name in a language reads as its key, words
    apart ("herbal-tea" -> "herbal tea")."""

    names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def of(self, category: str, language: str) -> str:
        return self.names.get(category, {}).get(language) or category.replace("-", " ")


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the dispatcher sends: batches, connections, pace, retries, when to stop."""

    batch_size: int = 500  # messages per handoff; a claim takes five batches
    connections: int = 8  # SMTP connections kept open to the relay, in all processes together
    processes: int = 1  # sending processes per run (one per CPU core is what pays)
    rate_per_second: int = 0  # token-bucket limit per relay; 0 = no limit
    retry_base_seconds: int = 60  # first retry after a 4xx; doubles each time
    retry_deadline_hours: int = 24  # then the delivery fails
    error_budget: int = 20  # consecutive relay-level failures before the campaign pauses
    lease_seconds: int = 300  # a claimed message still "sending" after this was in flight


@dataclass(frozen=True)
class ReputationPolicy:
    """When a run pauses itself to protect the sender (C37)."""

    complaint_rate: float = 0.003  # complaints per delivered message, over the whole run
    min_delivered: int = 1000  # ... once this many were delivered
    domain_block_rate: float = 0.05  # sender-level refusals per message to one receiving domain
    min_domain_messages: int = 100  # ... once that domain was sent this many


@dataclass(frozen=True)
class BusinessConfig:
    sender: SenderIdentity
    marketing: MarketingPolicy = field(default_factory=MarketingPolicy)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    categories: CategoryMap = field(default_factory=CategoryMap)
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    reputation: ReputationPolicy = field(default_factory=ReputationPolicy)
    category_names: CategoryNames = field(default_factory=CategoryNames)


class ConfigError(Exception):
    """The configuration has problems; `problems` names each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


_SENDER_KEYS = (
    "legal_name",
    "address",
    "enterprise_number",
    "contact_email",
    "from_email",
    "from_name",
    "privacy_url",
    "mail_domain",
)
_SECTIONS = (
    "sender",
    "marketing",
    "retention",
    "categories",
    "category_names",
    "delivery",
    "reputation",
)


def parse_business_config(data: Mapping[str, Any]) -> BusinessConfig:
    """Build the configuration from the TOML mapping, or raise ConfigError naming every problem."""
    problems: list[str] = []
    for key in data:
        if key not in _SECTIONS:
            problems.append(f"unknown section [{key}] (known: {', '.join(_SECTIONS)})")
    sender = _parse_sender(_section(data, "sender", problems), problems)
    marketing = _parse_marketing(_section(data, "marketing", problems), problems)
    retention = _parse_retention(_section(data, "retention", problems), problems)
    categories = _parse_categories(_section(data, "categories", problems), problems)
    delivery = _parse_delivery(_section(data, "delivery", problems), problems)
    reputation = _parse_reputation(_section(data, "reputation", problems), problems)
    names = _parse_category_names(_section(data, "category_names", problems), categories, problems)
    if retention.inactive_contact_months < marketing.soft_opt_in_months:
        # Else a customer still mailable under the exception would be erased as inactive.
        problems.append(
            "[retention] inactive_contact_months must be at least [marketing] soft_opt_in_months"
        )
    if problems or sender is None:
        raise ConfigError(problems or ["[sender] is incomplete"])
    return BusinessConfig(sender, marketing, retention, categories, delivery, reputation, names)


def _parse_category_names(
    table: Mapping[str, Any], categories: CategoryMap, problems: list[str]
) -> CategoryNames:
    names: dict[str, dict[str, str]] = {}
    for category, per_language in table.items():
        where = f"[category_names] {category}"
        if category not in categories.names:
            problems.append(f"{where}: not a category of [categories]")
            continue
        if not isinstance(per_language, dict):
            problems.append(f'{where} must map languages to names, e.g. {{ nl = "thee" }}')
            continue
        for language, name in per_language.items():
            if language not in LANGUAGES:
                problems.append(f"{where}: unknown language '{language}' (nl, fr or en)")
            elif not isinstance(name, str) or not name.strip() or _LINE_BREAKS.search(name):
                problems.append(f"{where}.{language} must be a name on one line")
            else:
                names.setdefault(category, {})[language] = name.strip()
    return CategoryNames(names)


def _parse_delivery(table: Mapping[str, Any], problems: list[str]) -> DeliveryPolicy:
    defaults = DeliveryPolicy()
    known = tuple(defaults.__dataclass_fields__)
    problems.extend(_unknown_keys("delivery", table, known))
    values = {}
    for name in known:
        value = table.get(name, getattr(defaults, name))
        allow_zero = name in ("rate_per_second", "retry_base_seconds")
        if allow_zero and value == 0:
            values[name] = 0
        else:
            values[name] = _positive_int(value, f"[delivery] {name}", problems)
    if values["processes"] > values["connections"]:
        problems.append("[delivery] processes must not exceed connections (one or more each)")
    return DeliveryPolicy(**values)


def _parse_reputation(table: Mapping[str, Any], problems: list[str]) -> ReputationPolicy:
    defaults = ReputationPolicy()
    problems.extend(_unknown_keys("reputation", table, tuple(defaults.__dataclass_fields__)))

    def rate(name: str) -> float:
        value = table.get(name, getattr(defaults, name))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            problems.append(f"[reputation] {name} must be a fraction between 0 and 1 (0.003: 0.3%)")
            return float(getattr(defaults, name))
        return float(value)

    def count(name: str) -> int:
        return _positive_int(
            table.get(name, getattr(defaults, name)), f"[reputation] {name}", problems
        )

    return ReputationPolicy(
        complaint_rate=rate("complaint_rate"),
        min_delivered=count("min_delivered"),
        domain_block_rate=rate("domain_block_rate"),
        min_domain_messages=count("min_domain_messages"),
    )


def _section(data: Mapping[str, Any], name: str, problems: list[str]) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        problems.append(f"[{name}] must be a table")
        return {}
    return value


def _unknown_keys(section: str, table: Mapping[str, Any], known: tuple[str, ...]) -> list[str]:
    return [f"[{section}] unknown key '{key}'" for key in table if key not in known]


def _parse_sender(table: Mapping[str, Any], problems: list[str]) -> SenderIdentity | None:
    known = (*_SENDER_KEYS, "default_locale")
    problems.extend(_unknown_keys("sender", table, known))
    values: dict[str, str] = {}
    for key in _SENDER_KEYS:
        value = table.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(
                f"[sender] {key} is missing: the sender identity must be complete (C30)"
            )
        else:
            values[key] = value.strip()
    for key in ("contact_email", "from_email"):
        if key in values and not _is_email(values[key]):
            problems.append(f"[sender] {key} is not a valid email address")
    if "privacy_url" in values and not values["privacy_url"].startswith("https://"):
        problems.append("[sender] privacy_url must be an https:// URL")
    if "mail_domain" in values and "@" in values["mail_domain"]:
        problems.append("[sender] mail_domain must be a domain, not an address")
    locale = table.get("default_locale", "nl")
    if locale not in SUPPORTED_LOCALES:
        problems.append(
            f"[sender] default_locale '{locale}' is not one of {', '.join(SUPPORTED_LOCALES)}"
        )
    if len(values) != len(_SENDER_KEYS) or locale not in SUPPORTED_LOCALES:
        return None
    return SenderIdentity(**values, default_locale=str(locale))


def _parse_marketing(table: Mapping[str, Any], problems: list[str]) -> MarketingPolicy:
    known = (
        "purposes",
        "third_party_purposes",
        "soft_opt_in_months",
        "frequency_cap",
        "soft_bounce_limit",
        "test_addresses",
        "acknowledge_opt_outs",
    )
    problems.extend(_unknown_keys("marketing", table, known))
    purposes = _names(
        table.get("purposes", list(DEFAULT_PURPOSES)), "[marketing] purposes", problems
    )
    third_party = _names(
        table.get("third_party_purposes", ["partner_offers"]),
        "[marketing] third_party_purposes",
        problems,
    )
    for purpose in third_party:
        if purpose not in purposes:
            problems.append(f"[marketing] third_party_purposes names unknown purpose '{purpose}'")
    cap_table = table.get("frequency_cap", {})
    if not isinstance(cap_table, Mapping):
        problems.append("[marketing] frequency_cap must be a table like { max = 2, days = 7 }")
        cap_table = {}
    problems.extend(_unknown_keys("marketing.frequency_cap", cap_table, ("max", "days")))
    cap = FrequencyCap(
        max=_positive_int(cap_table.get("max", 2), "[marketing] frequency_cap.max", problems),
        days=_positive_int(cap_table.get("days", 7), "[marketing] frequency_cap.days", problems),
    )
    test_addresses = table.get("test_addresses", [])
    if not isinstance(test_addresses, list) or not all(
        isinstance(a, str) and _is_email(a) for a in test_addresses
    ):
        problems.append("[marketing] test_addresses must be a list of valid email addresses")
        test_addresses = []
    return MarketingPolicy(
        purposes=tuple(purposes),
        third_party_purposes=frozenset(third_party),
        soft_opt_in_months=_positive_int(
            table.get("soft_opt_in_months", 24), "[marketing] soft_opt_in_months", problems
        ),
        frequency_cap=cap,
        soft_bounce_limit=_positive_int(
            table.get("soft_bounce_limit", 3), "[marketing] soft_bounce_limit", problems
        ),
        test_addresses=tuple(a.lower() for a in test_addresses),
        acknowledge_opt_outs=_flag(
            table.get("acknowledge_opt_outs", True), "[marketing] acknowledge_opt_outs", problems
        ),
    )


def _parse_retention(table: Mapping[str, Any], problems: list[str]) -> RetentionPolicy:
    defaults = RetentionPolicy()
    keys = tuple(defaults.__dataclass_fields__)
    problems.extend(_unknown_keys("retention", table, keys))
    values = {}
    for key in keys:
        where = f"[retention] {key}"
        value = _positive_int(table.get(key, getattr(defaults, key)), where, problems)
        if value > 1200:  # a century: more is a typo, and past any date arithmetic
            problems.append(f"{where} must be at most 1200")
            value = getattr(defaults, key)
        values[key] = value
    policy = RetentionPolicy(**values)
    if policy.delivery_log_months < 12:
        # A mail's unsubscribe link must work for a year (C24): its delivery must be there.
        problems.append("[retention] delivery_log_months must be at least 12 (C24)")
    return policy


def _parse_categories(table: Mapping[str, Any], problems: list[str]) -> CategoryMap:
    similar: dict[str, frozenset[str]] = {}
    for category, others in table.items():
        if not _NAME.match(str(category)):
            problems.append(f"[categories] '{category}' is not a valid category name")
        if not isinstance(others, list) or not all(isinstance(o, str) for o in others):
            problems.append(f"[categories] {category} must list category names")
            continue
        similar[str(category)] = frozenset(others)
    for category, others in similar.items():
        for other in sorted(others):
            if other not in similar:
                problems.append(f"[categories] {category} names undefined category '{other}'")
    return CategoryMap(similar)


def _names(value: Any, where: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where} must be a list of names")
        return []
    for name in value:
        if not _NAME.match(name):
            problems.append(f"{where}: '{name}' is not a valid name (lowercase, digits, _ or -)")
    if len(set(value)) != len(value):
        problems.append(f"{where} lists a name twice")
    return list(dict.fromkeys(value))


def _flag(value: Any, where: str, problems: list[str]) -> bool:
    if not isinstance(value, bool):
        problems.append(f"{where} must be true or false")
        return True
    return value


def _positive_int(value: Any, where: str, problems: list[str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        problems.append(f"{where} must be a positive whole number")
        return 1
    return value


def _is_email(value: str) -> bool:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True
