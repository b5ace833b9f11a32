"""The compliance footer's words, in nl, fr and en (C30). The composer fills it in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

from campaigns.config import CategoryNames, SenderIdentity

TEXT = {
    "nl": {
        "label": "Reclame",
        "why_consent": "Je ontvangt deze e-mail omdat je op {date} toestemming gaf voor {purpose}.",
        "why_customer": "Je ontvangt deze e-mail omdat je op {date} {categories} bij ons kocht"
        " en je toen niet afmeldde voor onze berichten.",
        "unsubscribe": "Afmelden",
        "preferences": "Voorkeuren aanpassen",
        "privacy": "Privacyverklaring",
        "enterprise": "Ondernemingsnummer",
        "date": "%d-%m-%Y",
        "and": " en ",
        "purposes": {
            "newsletter": "onze nieuwsbrief",
            "promotions": "onze promoties",
            "partner_offers": "aanbiedingen van onze partners",
        },
    },
    "fr": {
        "label": "Publicité",
        "why_consent": "Vous recevez cet e-mail parce que vous avez accepté le {date} de recevoir"
        " {purpose}.",
        "why_customer": "Vous recevez cet e-mail parce que vous avez acheté {categories} chez"
        " nous le {date} sans refuser nos messages.",
        "unsubscribe": "Se désinscrire",
        "preferences": "Gérer mes préférences",
        "privacy": "Déclaration de confidentialité",
        "enterprise": "Numéro d'entreprise",
        "date": "%d/%m/%Y",
        "and": " et ",
        "purposes": {
            "newsletter": "notre newsletter",
            "promotions": "nos promotions",
            "partner_offers": "les offres de nos partenaires",
        },
    },
    "en": {
        "label": "Advertisement",
        "why_consent": "You receive this email because on {date} you agreed to receive {purpose}.",
        "why_customer": "You receive this email because you bought {categories} from us on"
        " {date} and did not opt out of our messages then.",
        "unsubscribe": "Unsubscribe",
        "preferences": "Manage preferences",
        "privacy": "Privacy notice",
        "enterprise": "Enterprise number",
        "date": "%Y-%m-%d",
        "and": " and ",
        "purposes": {
            "newsletter": "our newsletter",
            "promotions": "our promotions",
            "partner_offers": "offers from our partners",
        },
    },
}


def language(locale: str | None, default: str) -> str:
    return locale if locale in TEXT else (default if default in TEXT else "en")


NO_NAMES = CategoryNames()  # categories read as their keys


@dataclass(frozen=True)
class MailBasis:
    """What the footer says about why the person gets the mail (from the delivery's basis)."""

    kind: str  # consent | soft_opt_in
    date: datetime
    purpose: str | None = None
    categories: tuple[str, ...] = ()


def why_line(basis: MailBasis, locale: str, names: CategoryNames = NO_NAMES) -> str:
    # The line names the day only (the date formats use %d, %m and %Y: a test checks), so
    # contacts whose basis fell on the same day share one cached line.
    categories = tuple(names.of(category, locale) for category in basis.categories)
    return _why(locale, basis.kind, basis.date.date(), basis.purpose, categories)


@lru_cache(maxsize=4096)
def _why(
    locale: str, kind: str, day: date, purpose: str | None, categories: tuple[str, ...]
) -> str:
    words = TEXT[locale]
    when = day.strftime(str(words["date"]))
    if kind == "consent":
        purposes: dict[str, str] = words["purposes"]  # type: ignore[assignment]
        named = purposes.get(purpose or "", purpose or "")
        return str(words["why_consent"]).format(date=when, purpose=named)
    bought = str(words["and"]).join(categories)
    return str(words["why_customer"]).format(date=when, categories=bought)


def footer(
    sender: SenderIdentity,
    basis: MailBasis,
    locale: str,
    *,
    unsubscribe_url: str,
    preferences_url: str,
    names: CategoryNames = NO_NAMES,
) -> dict[str, str]:
    words = TEXT[locale]
    return {
        "label": str(words["label"]),
        "why": why_line(basis, locale, names),
        "unsubscribe": str(words["unsubscribe"]),
        "unsubscribe_url": unsubscribe_url,
        "preferences": str(words["preferences"]),
        "preferences_url": preferences_url,
        "privacy": str(words["privacy"]),
        "privacy_url": sender.privacy_url,
        "legal_name": sender.legal_name,
        "address": sender.address,
        "enterprise_label": str(words["enterprise"]),
        "enterprise_number": sender.enterprise_number,
        "contact_email": sender.contact_email,
    }
