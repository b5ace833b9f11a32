"""Tracked links and the open pixel in one message, for a contact who consented to `tracking`
(C35; campaigns/tracking.py says what a click records). Only the campaign's own body is
rewritten, never the footer: its unsubscribe and preference links stay as they are."""

from __future__ import annotations

import re
from html import unescape

from markupsafe import Markup

from campaigns.sending.content import HREF, TEXT_URL, URL_TRAILING
from campaigns.tokens import Kind, TokenSigner


class Tracker:
    """Rewrites a campaign's tracked links (url -> link id, stored by `record_links`) through
    `/c/{token}` and adds the pixel `/o/{token}.gif`."""

    def __init__(self, links: dict[str, int], public_url: str, signer: TokenSigner) -> None:
        self.links = links
        self.public_url = public_url
        self.signer = signer

    def html(self, body: Markup, delivery_id: int) -> Markup:
        def tracked(m: re.Match[str]) -> str:
            link_id = self.links.get(unescape(m.group(3)))
            if link_id is None:
                return m.group(0)
            quote = m.group(2)
            return f"{m.group(1)}{quote}{self._click(delivery_id, link_id)}{quote}"

        token = self.signer.delivery_token(Kind.OPEN, delivery_id)
        pixel = (
            f'<img src="{self.public_url}/o/{token}.gif" width="1" height="1" alt=""'
            ' style="display:block;border:0">'
        )
        return Markup(HREF.sub(tracked, str(body)) + pixel)  # noqa: S704 - our URLs only

    def text(self, body: str, delivery_id: int) -> str:
        def tracked(m: re.Match[str]) -> str:
            url = m.group(0).rstrip(URL_TRAILING)
            link_id = self.links.get(url)
            if link_id is None:
                return m.group(0)
            return self._click(delivery_id, link_id) + m.group(0)[len(url) :]

        return TEXT_URL.sub(tracked, body)

    def _click(self, delivery_id: int, link_id: int) -> str:
        return f"{self.public_url}/c/{self.signer.click_token(delivery_id, link_id)}"
