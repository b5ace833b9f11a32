"""Service mails that carry no advertising and no tracking: the double opt-in request (C5),
the acknowledgement of an opt-out (C15) and the person's own data when they ask for it (C38).
`Notices` composes and sends them; the web pages, the shop API and the inbound listener all go
through it."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import format_datetime
from html import escape
from typing import Any

from campaigns.clock import Clock
from campaigns.config import SenderIdentity
from campaigns.models import Signup
from campaigns.objections import Addressee
from campaigns.tokens import Kind, TokenSigner
from mailer.delivery.compose import Composed
from mailer.delivery.footer import language
from mailer.delivery.mime import address, alternative, header_text, mailbox, with_attachment
from mailer.delivery.transport import SmtpTransport

log = logging.getLogger("mailer.delivery")

TEXT = {
    "nl": {
        "confirm_subject": "Bevestig je inschrijving",
        "confirm_body": "Iemand, hopelijk jij, schreef dit adres in bij {shop}. Bevestig je"
        " inschrijving met deze link:\n\n{link}\n\nWas jij het niet? Negeer dan deze e-mail:"
        " zonder bevestiging sturen we je niets.",
        "ack_subject": "Je bent afgemeld",
        "ack_body": "We hebben je afmelding goed ontvangen. Je krijgt van {shop} geen"
        " reclame-e-mails meer.",
        "export_subject": "Je gegevens bij {shop}",
        "export_body": "Je vroeg welke gegevens {shop} over je bewaart. Je vindt ze allemaal"
        " in het bijgevoegde bestand (JSON).",
    },
    "fr": {
        "confirm_subject": "Confirmez votre inscription",
        "confirm_body": "Quelqu'un, sans doute vous, a inscrit cette adresse chez {shop}."
        " Confirmez votre inscription avec ce lien :\n\n{link}\n\nCe n'était pas vous ? Ignorez"
        " cet e-mail : sans confirmation, nous ne vous enverrons rien.",
        "ack_subject": "Votre désinscription est enregistrée",
        "ack_body": "Nous avons bien reçu votre désinscription. {shop} ne vous enverra plus"
        " d'e-mails publicitaires.",
        "export_subject": "Vos données chez {shop}",
        "export_body": "Vous avez demandé les données que {shop} conserve à votre sujet. Vous"
        " les trouverez toutes dans le fichier joint (JSON).",
    },
    "en": {
        "confirm_subject": "Please confirm your subscription",
        "confirm_body": "Someone, hopefully you, signed this address up with {shop}. Confirm"
        " with this link:\n\n{link}\n\nNot you? Ignore this email: without confirmation we"
        " send you nothing.",
        "ack_subject": "You are unsubscribed",
        "ack_body": "We received your request. {shop} will not send you advertising email"
        " any more.",
        "export_subject": "Your data at {shop}",
        "export_body": "You asked which data {shop} keeps about you. You find all of it in the"
        " attached file (JSON).",
    },
}


def notice(
    kind: str,
    *,
    to_email: str,
    to_name: str | None,
    locale: str | None,
    sender: SenderIdentity,
    clock: Clock,
    link: str = "",
    attachment: tuple[str, str, bytes] | None = None,
) -> Composed:
    """`kind` is "confirm" (needs `link`), "ack" or "export" (with its `attachment`)."""
    words = TEXT[language(locale, sender.default_locale)]
    body = words[f"{kind}_body"].format(shop=sender.from_name, link=link)
    identity = f"{sender.legal_name}, {sender.address}, {sender.enterprise_number}"
    text = f"{body}\n\n--\n{identity}\n{sender.contact_email}\n"
    paragraphs = "".join(f"<p>{escape(p)}</p>" for p in body.split("\n\n"))
    if link:
        paragraphs = paragraphs.replace(
            escape(link), f'<a href="{escape(link)}">{escape(link)}</a>'
        )
    html = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
        f"{escape(words[f'{kind}_subject'].format(shop=sender.from_name))}</title></head>"
        f"<body>{paragraphs}"
        f"<p>{escape(identity)}<br>{escape(sender.contact_email)}</p></body></html>"
    )
    message_id = f"<{uuid.uuid4().hex}@{sender.mail_domain}>"
    to, smtputf8 = mailbox(to_email)  # as the campaign composer writes it
    headers = [
        ("From", address(sender.from_name, sender.from_email)),
        ("Reply-To", sender.contact_email),
        ("To", address(to_name, to)),
        ("Subject", header_text(words[f"{kind}_subject"].format(shop=sender.from_name))),
        ("Date", format_datetime(clock.now())),
        ("Message-ID", message_id),
        ("Auto-Submitted", "auto-generated"),
    ]
    boundary = f"=_notice_{uuid.uuid4().hex}"
    if attachment is None:
        data = alternative(headers, text, html, boundary)
    else:
        data = with_attachment(headers, text, html, attachment, boundary)
    # Service mail bounces go to the plain bounce mailbox: they map to no delivery.
    return Composed(f"bounces@{sender.mail_domain}", to, message_id, data, smtputf8)


@dataclass(frozen=True)
class Notices:
    """Sends the service mails after the fact: a failure is logged, never raised (the request
    that caused it has committed)."""

    sender: SenderIdentity
    public_url: str
    signer: TokenSigner
    clock: Clock
    transport: SmtpTransport
    acknowledge_opt_outs: bool

    async def confirm_signup(self, signup: Signup) -> None:
        """The double opt-in request (C5): its link confirms this sign-up only."""
        link = f"{self.public_url}/confirm/{self.signer.hex_token(Kind.CONFIRM, signup.id)}"
        await self._send("confirm", signup.email, signup.name, signup.locale, link)

    async def acknowledge(self, addressees: Sequence[Addressee]) -> list[bool]:
        """One acknowledgement per opt-out, without advertising (C15), if the shop wants them;
        a batch over one connection. Whether each is done (sent, or not wanted, or not
        composable: never worth a retry)."""
        if not self.acknowledge_opt_outs:
            return [True] * len(addressees)
        composed = [self._compose("ack", a.email, a.name, a.locale) for a in addressees]
        sent = iter(await self.transport.send_all_quietly([m for m in composed if m is not None]))
        return [True if message is None else next(sent) for message in composed]

    async def send_export(self, addressee: Addressee, document: dict[str, Any]) -> None:
        """The person's data, as they asked from the preference page: to the address only,
        never to whoever holds the link (C38)."""
        payload = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
        attachment = ("my-data.json", "application/json", payload)
        await self._send(
            "export", addressee.email, addressee.name, addressee.locale, attachment=attachment
        )

    async def _send(
        self,
        kind: str,
        email: str,
        name: str | None,
        locale: str | None,
        link: str = "",
        attachment: tuple[str, str, bytes] | None = None,
    ) -> bool:
        message = self._compose(kind, email, name, locale, link, attachment)
        if message is None:
            return True  # it never will be
        return await self.transport.send_quietly(message)

    def _compose(
        self,
        kind: str,
        email: str,
        name: str | None,
        locale: str | None,
        link: str = "",
        attachment: tuple[str, str, bytes] | None = None,
    ) -> Composed | None:
        """The service mail, or None when it cannot be composed (an odd name or address: the
        objection stands regardless)."""
        try:
            return notice(
                kind,
                to_email=email,
                to_name=name,
                locale=locale,
                sender=self.sender,
                clock=self.clock,
                link=link,
                attachment=attachment,
            )
        except Exception as exc:
            log.warning("service mail not composed: %s", type(exc).__name__)
            return None
