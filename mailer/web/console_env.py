"""How a console page is drawn: the Jinja2 environment of templates/console/ (autoescaped), the
language from the browser's Accept-Language, the console's words. No web framework here: the
composition root builds it for every process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from campaigns.config import SenderIdentity
from campaigns.sending import pauses
from mailer.web.console_text import CONSOLE


class ConsolePages:
    def __init__(self, templates_dir: Path, sender: SenderIdentity, secure_cookies: bool) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir.parent / "console")),
            autoescape=select_autoescape(default_for_string=True, default=True),
            auto_reload=False,
        )
        self.env.filters["pause_reason"] = pause_in_words
        self.sender = sender
        self.secure_cookies = secure_cookies  # Secure cookies outside dev mode (C39)

    def language(self, accept_language: str) -> str:
        """The first of nl, fr, en the browser asks for (by its q order), else the shop's."""
        wanted = []
        for part in accept_language.split(","):
            tag, _, q = part.strip().partition(";q=")
            try:
                weight = float(q) if q else 1.0
            except ValueError:
                continue
            wanted.append((-weight, tag.split("-")[0].lower()))
        for _, tag in sorted(wanted):
            if tag in CONSOLE:
                return tag
        return self.sender.default_locale if self.sender.default_locale in CONSOLE else "en"

    def render(self, lang: str, template: str, title_key: str, **context: Any) -> str:
        w = CONSOLE[lang]
        return self.env.get_template(template).render(
            lang=lang, w=w, title=w[title_key], shop=self.sender.from_name, **context
        )

    def fragment(self, lang: str, template: str, **context: Any) -> str:
        """A part of a page the page's script loads (the audience, the preview's firings ...)."""
        return self.env.get_template(template).render(lang=lang, w=CONSOLE[lang], **context)


def pause_in_words(reason: str, w: dict[str, str]) -> str:
    """A stored pause reason (English, as the API says it) in the console's language, its
    percentages written as the language writes them; as stored when it reads as none of the
    known ones."""
    known = pauses.read(reason)
    if known is None:
        return reason
    values = dict(known.values)
    for name in ("rate", "limit"):
        if name in values:
            values[name] = values[name].replace(".", w["decimal"]).replace("%", w["percent"])
    return w[f"pause_{known.kind}"].format(**values)
