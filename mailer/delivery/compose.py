"""The composer: every marketing mail compliant by construction (C23, C24, C29, C30, C35).

The campaign template only writes the body. The composer adds the headers (From, Reply-To,
To, Subject, Date, Message-ID, List-Unsubscribe with an HTTPS URI and a mailto,
List-Unsubscribe-Post, Feedback-ID), the VERP envelope sender, and the footer in the contact's
language, whose "why you receive this" comes from the delivery's recorded basis. It refuses to
compose when any piece would be missing: composition fails closed.

Speed (compose runs once per recipient): the layout is rendered once per locale with markers
where the per-message values go, and proved equal to the full render before it is used; the
campaign's own templates are rendered per message, sandboxed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, Template, nodes
from markupsafe import Markup, escape

from campaigns.clock import Clock
from campaigns.config import CategoryNames, SenderIdentity
from campaigns.models import Campaign
from campaigns.sending.campaigns import DeliveryRecipient
from campaigns.sending.content import (
    CampaignContent,
    Variant,
    environment,
    loaded,
    self_contained_tree,
)
from campaigns.tokens import Kind, TokenSigner
from mailer.delivery.dkim import DkimSigner
from mailer.delivery.footer import NO_NAMES, TEXT, MailBasis, footer, language, why_line
from mailer.delivery.mime import address, alternative, header_text, mailbox
from mailer.delivery.tracking import Tracker


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
    basis: MailBasis
    tracked: bool = False  # consent for tracking stands (C35)


def recipient_of(row: DeliveryRecipient) -> Recipient:
    return Recipient(
        delivery_id=row.delivery_id,
        contact_id=row.contact_id,
        email=row.email,
        name=row.name,
        locale=row.locale,
        basis=MailBasis(row.basis_kind, row.basis_date, row.purpose, row.categories),
        tracked=row.tracked,
    )


@dataclass(frozen=True)
class Composed:
    envelope_from: str  # VERP: bounces+<token>@<mail_domain>
    recipient: str  # as RCPT TO and the To header carry it (mime.mailbox)
    message_id: str
    data: bytes
    # The recipient's local part is not ASCII: RCPT TO and the To header carry UTF-8, so the
    # message goes only with SMTPUTF8 (RFC 6531, RFC 6532).
    smtputf8: bool = False


RENDER_CACHE_SIZE = 4096  # distinct bodies kept per campaign (cleared when full)

# What the footer must show, in the text and in the HTML part (C30).
REQUIRED_FOOTER = (
    "label",
    "why",
    "unsubscribe_url",
    "privacy_url",
    "legal_name",
    "address",
    "enterprise_number",
    "contact_email",
)
# The footer fields that differ from one message to the next; the rest is fixed per locale.
VARYING = ("why", "unsubscribe_url", "preferences_url")
# A marker stands in for a per-message value in the pre-rendered layout. Autoescape leaves it
# as it is (no &<>"'), and no template text contains NUL, so any NUL left after the split means
# the layout did something to a value (a filter) that filling in afterwards cannot reproduce.
_MARK = re.compile("\x00slot:([a-z_]+)\x00")


def _mark(name: str) -> str:
    return f"\x00slot:{name}\x00"


class Holed:
    """One part rendered with markers: its fixed chunks, and between them the name of the value
    that goes there. Filling it in is one join (several times faster than str.format, which
    parses its format string on every call)."""

    def __init__(self, chunks: list[str], names: list[str]) -> None:
        self.chunks = chunks
        self.names = names
        self._head = chunks[0]
        self._rest = tuple(zip(names, chunks[1:], strict=True))

    def fill(self, values: dict[str, str]) -> str:
        out = [self._head]
        for name, chunk in self._rest:
            out += (values[name], chunk)
        return "".join(out)


@dataclass(frozen=True)
class Prefilled:
    """The layout of one locale, rendered once, with holes for the body and the footer values
    that vary per message (escaped here for HTML exactly as autoescape does)."""

    html: Holed
    text: Holed

    def fill(
        self,
        html_body: Markup,
        text_body: str,
        why: str,
        unsubscribe_url: str,
        preferences_url: str,
    ) -> tuple[str, str]:
        html = self.html.fill(
            {
                "body": html_body,
                "why": escape(why),
                "unsubscribe_url": escape(unsubscribe_url),
                "preferences_url": escape(preferences_url),
            }
        )
        text = self.text.fill(
            {
                "body": text_body,
                "why": why,
                "unsubscribe_url": unsubscribe_url,
                "preferences_url": preferences_url,
            }
        )
        return html, text


class Layout:
    """The base layout (HTML and text) that wraps every campaign body with the footer."""

    def __init__(self, templates_dir: Path) -> None:
        env = environment(templates_dir)
        self.html: Template = loaded(env, "layout/base.html")
        self.text: Template = loaded(env, "layout/base.txt")
        self.only_printed = all(
            _only_printed(env, name) for name in ("layout/base.html", "layout/base.txt")
        )

    def render(
        self, locale: str, subject: str, words: dict[str, str], html_body: Markup, text_body: str
    ) -> tuple[str, str]:
        """The full Jinja render of both parts, refused when a footer piece is missing."""
        shared = {"footer": words, "locale": locale, "subject": subject}
        html = self.html.render(shared, body=html_body)
        text = self.text.render(shared, body=text_body)
        _require_footer(html, text, words)
        return html, text

    def prefill(self, locale: str, subject: str, words: dict[str, str]) -> Prefilled | None:
        """The layout rendered once for `locale`, with holes for the per-message values;
        `words` is a complete sample footer. None when the result could differ from `render`
        (the layout filters a value, say) or could lack a footer piece: `render` then serves
        that layout, per message, and refuses it as before."""
        if not self.only_printed:
            return None
        marked = {**words, **{name: _mark(name) for name in VARYING}}
        shared = {"footer": marked, "locale": locale, "subject": subject}
        try:
            body = Markup(_mark("body"))  # noqa: S704 - a marker, no markup
            html = _split(self.html.render(shared, body=body))
            text = _split(self.text.render(shared, body=_mark("body")))
        except Exception:  # whatever fails here fails in `render` too, per message
            return None
        if html is None or text is None or not _has_footer(html, text, words):
            return None
        prefilled = Prefilled(html, text)
        # The proof: byte-equal to the full render, for the sample and for values that need
        # escaping.
        odd = {
            **words,
            "why": "<b>Why & \"why\" {0} 'not'</b>",
            "unsubscribe_url": "https://x.example/u/a?b=1&c='2'",
            "preferences_url": 'https://x.example/p/"{x}"<>',
        }
        bodies = (Markup("<p>Body & {0}</p>"), "Body <&> {x}")
        for sample in (words, odd):
            try:
                expected = self.render(locale, subject, sample, *bodies)
            except Exception:  # as above
                return None
            values = (sample["why"], sample["unsubscribe_url"], sample["preferences_url"])
            if prefilled.fill(*bodies, *values) != expected:
                return None
        return prefilled


def _only_printed(env: Environment, name: str) -> bool:
    """Whether the layout only prints the per-message values, as `{{ body }}` and
    `{{ footer.why }}`: never tests, filters or passes them on. Only then does a render with
    markers stand for every possible value, beyond the samples `prefill` compares."""
    tree = self_contained_tree(env, name)
    if tree is None:
        return False  # another template could use the values: not checked here
    printed: set[int] = set()
    for output in tree.find_all(nodes.Output):
        printed.update(id(node) for node in output.nodes)
    fixed_uses: set[int] = set()
    for attribute in tree.find_all(nodes.Getattr):
        owner = attribute.node
        if isinstance(owner, nodes.Name) and owner.name == "footer":
            if attribute.attr in VARYING and id(attribute) not in printed:
                return False
            fixed_uses.add(id(owner))
    for variable in tree.find_all(nodes.Name):
        if variable.name == "body" and id(variable) not in printed:
            return False
        if variable.name == "footer" and id(variable) not in fixed_uses:
            return False  # `footer` itself, `footer['why']`, a loop over it
    return True


def _split(rendered: str) -> Holed | None:
    """The fixed chunks of a render with markers, and the marked names between them."""
    pieces = _MARK.split(rendered)
    chunks, names = pieces[0::2], pieces[1::2]
    if any("\x00" in chunk for chunk in chunks) or not set(names) <= {*VARYING, "body"}:
        return None
    return Holed(chunks, names)


def _has_footer(html: Holed, text: Holed, words: dict[str, str]) -> bool:
    """Whether every message gets every footer piece: a varying one as a field in both parts,
    a fixed one inside a fixed chunk of both parts (so no value can be what supplies it)."""
    for key in REQUIRED_FOOTER:
        if key in VARYING:
            if key not in html.names or key not in text.names:
                return False
            continue
        needle, escaped = words[key], str(escape(words[key]))
        if not any(needle in chunk for chunk in text.chunks):
            return False
        if not any(needle in chunk or escaped in chunk for chunk in html.chunks):
            return False
    return True


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
        category_names: CategoryNames = NO_NAMES,
    ) -> None:
        _require_identity(sender, public_url)
        self.campaign = campaign
        self.sender = sender
        self.category_names = category_names
        self.public_url = public_url.rstrip("/")
        self.signer = signer
        self.clock = clock
        self.dkim = dkim
        self.content = CampaignContent(templates_dir, campaign.template, sender.default_locale)
        # The links tracking may rewrite, and once `track` has their ids, the rewriter (C35).
        self.links = self.content.literal_links()
        self.tracker: Tracker | None = None
        self.layout = Layout(templates_dir)
        # The layout per locale, rendered now; None where only the full render is exact.
        self.prefilled = {
            locale: self.layout.prefill(locale, campaign.subject, self._sample_footer(locale))
            for locale in TEXT
        }
        self._date: tuple[tuple[datetime, object], str] | None = None
        self._rendered: dict[tuple[Any, ...], tuple[Markup, str]] = {}
        # Constant per campaign: computed once.
        self._from = address(sender.from_name, sender.from_email)
        self._subject = header_text(campaign.subject)
        self._feedback_id = f"{campaign.id}:{campaign.purpose}:{sender.mail_domain}:mailer"
        self._boundary = f"=_mailer_{campaign.id}"
        self._reply_to = address(None, sender.contact_email)

    def compose(self, recipient: Recipient) -> Composed:
        domain = self.sender.mail_domain
        email = recipient.email  # as RCPT TO and the To header carry it, and SMTPUTF8 or not
        to, smtputf8 = (email, False) if email.isascii() else mailbox(email)
        unsubscribe = self.signer.delivery_token(Kind.UNSUBSCRIBE, recipient.delivery_id)
        bounce = self.signer.delivery_token(Kind.BOUNCE, recipient.delivery_id)
        preferences = self.signer.hex_token(Kind.PREFERENCES, recipient.contact_id)
        unsubscribe_url = f"{self.public_url}/u/{unsubscribe}"
        preferences_url = f"{self.public_url}/p/{preferences}"
        locale = language(recipient.locale, self.sender.default_locale)
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
        html_body, text_body = self._bodies(locale, variant, context)
        if recipient.tracked and self.tracker is not None and recipient.delivery_id:
            html_body = self.tracker.html(html_body, recipient.delivery_id)
            text_body = self.tracker.text(text_body, recipient.delivery_id)
        prefilled = self.prefilled[locale]
        if prefilled is not None:
            why = why_line(recipient.basis, locale, self.category_names)
            html, text = prefilled.fill(html_body, text_body, why, unsubscribe_url, preferences_url)
        else:
            words = footer(
                self.sender,
                recipient.basis,
                locale,
                unsubscribe_url=unsubscribe_url,
                preferences_url=preferences_url,
                names=self.category_names,
            )
            html, text = self.layout.render(
                locale, self.campaign.subject, words, html_body, text_body
            )

        # Signed, so a complaint or a relay event that quotes it names the delivery (C19), but
        # not a credential: its own kind, it unsubscribes nobody (relays log Message-IDs).
        message_id = f"<{self.signer.delivery_token(Kind.MESSAGE, recipient.delivery_id)}@{domain}>"
        headers = [
            ("From", self._from),
            ("Reply-To", self._reply_to),
            ("To", address(recipient.name, to)),
            ("Subject", self._subject),
            ("Date", self._date_header()),
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
        return Composed(f"bounces+{bounce}@{domain}", to, message_id, data, smtputf8)

    def track(self, links: dict[str, int]) -> None:
        """Rewrite these links (url -> stored link id) for recipients who consented to
        tracking. Without it (a preview, a test send) every message keeps its own links."""
        self.tracker = Tracker(links, self.public_url, self.signer)

    def _bodies(self, locale: str, variant: Variant, context: dict[str, Any]) -> tuple[Markup, str]:
        """The campaign's own html and text for this recipient. When the template reads only
        some contact fields (first name, say), recipients who share their values share the
        render: a cache keyed by exactly those values, so a hit is what a render would give."""
        key = None
        if variant.reads is not None:
            contact: dict[str, Any] = context["contact"]
            key = (locale, *(contact.get(field) for field in variant.reads))
            cached = self._rendered.get(key)
            if cached is not None:
                return cached
        html = Markup(variant.html.render(context))  # noqa: S704 - autoescaped render
        bodies = html, variant.text.render(context).rstrip("\n")
        if key is not None:
            if len(self._rendered) >= RENDER_CACHE_SIZE:
                self._rendered.clear()
            self._rendered[key] = bodies
        return bodies

    def _date_header(self) -> str:
        """The Date header, formatted once per second: it shows neither microseconds nor more
        than the wall clock and its UTC offset, which make the key."""
        now = self.clock.now()
        key = (now.replace(microsecond=0, tzinfo=None), now.utcoffset())
        if self._date is None or self._date[0] != key:
            self._date = (key, format_datetime(now))
        return self._date[1]

    def _sample_footer(self, locale: str) -> dict[str, str]:
        basis = MailBasis("consent", datetime(2026, 1, 2, tzinfo=UTC), self.campaign.purpose)
        token = "a" * 40
        return footer(
            self.sender,
            basis,
            locale,
            unsubscribe_url=f"{self.public_url}/u/{token}",
            preferences_url=f"{self.public_url}/p/{token}",
        )


@dataclass(frozen=True)
class Composers:
    """Makes a campaign's composer: what the dispatcher, the preview and the test send share,
    so the three cannot compose differently."""

    sender: SenderIdentity
    public_url: str
    templates_dir: Path
    signer: TokenSigner
    clock: Clock
    dkim: DkimSigner | None = None
    category_names: CategoryNames = NO_NAMES

    def for_campaign(self, campaign: Campaign) -> CampaignComposer:
        return CampaignComposer(
            CampaignInfo(
                campaign.id, campaign.name, campaign.purpose, campaign.subject, campaign.template
            ),
            sender=self.sender,
            public_url=self.public_url,
            templates_dir=self.templates_dir,
            signer=self.signer,
            clock=self.clock,
            dkim=self.dkim,
            category_names=self.category_names,
        )


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
    for key in REQUIRED_FOOTER:
        needle = words[key]
        escaped = Markup.escape(needle)
        if needle not in text or (needle not in html and escaped not in html):
            raise CompositionError(f"the footer lacks its {key.replace('_', ' ')}")
