"""How a recipient page is drawn: the Jinja2 environment of templates/pages/ (autoescaped), the
shop's identity under every page, and the page words in the recipient's language. No web
framework here: the composition root builds it for every process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from campaigns.config import SenderIdentity
from mailer.delivery.footer import language
from mailer.web.page_text import PAGES


def page_environment(templates_dir: Path) -> Environment:
    return Environment(
        loader=FileSystemLoader(str(templates_dir.parent / "pages")),
        autoescape=select_autoescape(default_for_string=True, default=True),
        auto_reload=False,
    )


class Pages:
    def __init__(self, templates_dir: Path, sender: SenderIdentity) -> None:
        self.env = page_environment(templates_dir)
        self.sender = sender

    def words(self, locale: str | None) -> dict[str, str]:
        return PAGES[language(locale, self.sender.default_locale)]

    def html(self, locale: str | None, **context: Any) -> str:
        sender = self.sender
        return self.env.get_template("page.html").render(
            locale=language(locale, sender.default_locale),
            shop=sender.from_name,
            shop_identity=f"{sender.legal_name} · {sender.address} · {sender.enterprise_number}"
            f" · {sender.contact_email}",
            **context,
        )
