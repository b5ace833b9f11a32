"""The composer: every marketing mail compliant by construction (C23, C24, C29, C30, C35).

The campaign template only writes the body. The composer adds the headers (From, Reply-To,
To, Subject, Date, Message-ID, List-Unsubscribe with an HTTPS URI and a mailto,
List-Unsubscribe-Post, Feedback-ID), the VERP envelope sender, and the footer in the contact's
language, whose "why you receive this" comes from the delivery's recorded basis. It refuses to
compose when any piece would be missing: composition fails closed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Template
from markupsafe import Markup

from campaigns.campaigns import DeliveryRecipient
from campaigns.clock import Clock
from campaigns.config import SenderIdentity
from campaigns.content import CampaignContent, environment
from campaigns.tokens import Kind, TokenSigner
from mailer.delivery.footer import Basis, footer, language
from mailer.delivery.mime import address, alternative, header_text

if TYPE_CHECKING:
    from mailer.delivery.dkim import DkimSigner


class CompositionError(Exception):
    """A message could not be made compliant; nothing is sent."""


@dataclass(frozen=True)
class CampaignInfo:
    id: str
    name: str
    purpose: str
    subject: str
    template: str


@dataclass(frozen=True)
class Recipient:
    delivery_id: int  # 0 for a preview or a test send: its tokens map to nothing
    contact_id: str
    email: str
    name: str | None
    locale: str | None
    basis: Basis


def recipient_of(row: DeliveryRecipient) -> Recipient:
    return Recipient(
        delivery_id=row.delivery_id,
        contact_id=row.contact_id,
        email=row.email,
        name=row.name,
        locale=row.locale,
        basis=Basis(row.basis_kind, row.basis_date, row.purpose, row.categories),
    )


@dataclass(frozen=True)
class Composed:
    envelope_from: str  # VERP: bounces+<token>@<mail_domain>
    recipient: str
    message_id: str
    data: bytes


class Layout:
    """The base layout (HTML and text) that wraps every campaign body with the footer."""

    def __init__(self, templates_dir: Path) -> None:
        env = environment(templates_dir)
        self.html: Template = env.get_template("layout/base.html")
        self.text: Template = env.get_template("layout/base.txt")


class CampaignComposer:
    """Compiled once per campaign; `compose` makes one recipient's message bytes."""

    def __init__(
        self,
        campaign: CampaignInfo,
        *,
        sender: SenderIdentity,
        public_url: str,
        templates_dir: Path,
        signer: TokenSigner,
        clock: Clock,
        dkim: DkimSigner | None = None,
    ) -> None:
        _require_identity(sender, public_url)
        self.campaign = campaign
        self.sender = sender
        self.public_url = public_url.rstrip("/")
        self.signer = signer
        self.clock = clock
        self.dkim = dkim
        self.content = CampaignContent(templates_dir, campaign.template, sender.default_locale)
        self.layout = Layout(templates_dir)
        # Constant per campaign: computed once.
        self._from = address(sender.from_name, sender.from_email)
        self._subject = header_text(campaign.subject)
        self._feedback_id = f"{campaign.id}:{campaign.purpose}:{sender.mail_domain}:mailer"
        self._boundary = f"=_mailer_{campaign.id}"

    def compose(self, recipient: Recipient) -> Composed:
        domain = self.sender.mail_domain
        unsubscribe = self.signer.delivery_token(Kind.UNSUBSCRIBE, recipient.delivery_id)
        bounce = self.signer.delivery_token(Kind.BOUNCE, recipient.delivery_id)
        preferences = self.signer.hex_token(Kind.PREFERENCES, recipient.contact_id)
        unsubscribe_url = f"{self.public_url}/u/{unsubscribe}"
        locale = language(recipient.locale, self.sender.default_locale)
        words = footer(
            self.sender,
            recipient.basis,
            locale,
            unsubscribe_url=unsubscribe_url,
            preferences_url=f"{self.public_url}/p/{preferences}",
        )
        _, variant = self.content.variant(locale)
        context = {
            "contact": {
                "name": recipient.name,
                "first_name": (recipient.name or "").split(" ")[0] or None,
                "email": recipient.email,
                "locale": locale,
            },
            "campaign": {
                "name": self.campaign.name,
                "subject": self.campaign.subject,
                "purpose": self.campaign.purpose,
            },
            "sender": {
                "name": self.sender.from_name,
                "legal_name": self.sender.legal_name,
                "contact_email": self.sender.contact_email,
            },
        }
        html_body = Markup(variant.html.render(context))  # noqa: S704 - autoescaped render
        text_body = variant.text.render(context)
        shared = {"footer": words, "locale": locale, "subject": self.campaign.subject}
        html = self.layout.html.render(shared, body=html_body)
        text = self.layout.text.render(shared, body=text_body.rstrip("\n"))
        _require_footer(html, text, words)

        # Unique and stable per delivery, but not a credential: relays log Message-IDs.
        message_id = f"<{hashlib.sha256(unsubscribe.encode()).hexdigest()[:32]}@{domain}>"
        headers = [
            ("From", self._from),
            ("Reply-To", address(None, self.sender.contact_email)),
            ("To", address(recipient.name, recipient.email)),
            ("Subject", self._subject),
            ("Date", format_datetime(self.clock.now())),
            ("Message-ID", message_id),
            (
                "List-Unsubscribe",
                f"<{unsubscribe_url}>, <mailto:unsubscribe+{unsubscribe}@{domain}"
                "?subject=unsubscribe>",
            ),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Feedback-ID", self._feedback_id),
        ]
        data = alternative(headers, text, html, self._boundary)
        if self.dkim is not None:
            data = self.dkim.sign(data)
        return Composed(f"bounces+{bounce}@{domain}", recipient.email, message_id, data)


def _require_identity(sender: SenderIdentity, public_url: str) -> None:
    missing = [
        name
        for name in (
            "legal_name",
            "address",
            "enterprise_number",
            "contact_email",
            "from_email",
            "privacy_url",
            "mail_domain",
        )
        if not getattr(sender, name, "").strip()
    ]
    if missing:
        raise CompositionError(f"sender identity incomplete: {', '.join(missing)}")
    if not public_url.startswith(("https://", "http://")):
        raise CompositionError("public URL missing: unsubscribe links need it")


def _require_footer(html: str, text: str, words: dict[str, str]) -> None:
    """Fail closed if the layout lost a required footer piece (C30)."""
    for key in (
        "label",
        "why",
        "unsubscribe_url",
        "privacy_url",
        "legal_name",
        "address",
        "enterprise_number",
        "contact_email",
    ):
        needle = words[key]
        escaped = Markup.escape(needle)
        if needle not in text or (needle not in html and escaped not in html):
            raise CompositionError(f"the footer lacks its {key.replace('_', ' ')}")
