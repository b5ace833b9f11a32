"""Campaign templates: sandboxed Jinja2, compiled once per campaign, checked before use.

A campaign names `<name>.html` under templates/email/; beside it live `<name>.txt` (the plain
text part) and optional translations `<name>.<locale>.html` / `.txt`. A template only sees the
context it is given (`contact`, `campaign`, `sender`); anything else, or anything that does not
render, is rejected when the campaign is created, with the template's name and line.
"""

from __future__ import annotations

import html
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    nodes,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

from campaigns.config import SUPPORTED_LOCALES
from campaigns.errors import InvalidInput


def environment(templates_dir: Path) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=FileSystemLoader(str(templates_dir)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=True,
        auto_reload=False,
    )


SAMPLE_CONTEXT: dict[str, Any] = {
    "contact": {"name": "An Peeters", "first_name": "An", "email": "an@example.be", "locale": "nl"},
    "campaign": {"name": "Sample", "subject": "Sample subject", "purpose": "newsletter"},
    "sender": {"name": "Sender", "legal_name": "Sender BV", "contact_email": "hi@example.be"},
}


@dataclass(frozen=True)
class Variant:
    html: Template
    text: Template
    # The contact fields both templates read, when a render can be reused for recipients with
    # the same values (see contact_fields_read); None: render for every recipient.
    reads: tuple[str, ...] | None = None


class CampaignContent:
    """The compiled html and text templates of one campaign, per locale."""

    def __init__(self, templates_dir: Path, name: str, default_locale: str) -> None:
        if not name.endswith(".html") or "/" in name or name.startswith("."):
            raise InvalidInput(f"template '{name}' must be a .html file name", field="template")
        self.name = name
        self.default_locale = default_locale
        env = environment(templates_dir)
        self._env = env
        stem = name.removesuffix(".html")
        self._variants: dict[str, Variant] = {}
        if not (templates_dir / name).is_file():
            raise InvalidInput(
                f"no template '{name}' under {templates_dir}",
                field="template",
                reason="unknown_template",
            )
        self._variants[default_locale] = self._compile(env, f"{stem}.html", f"{stem}.txt")
        for locale in SUPPORTED_LOCALES:
            html = f"{stem}.{locale}.html"
            if (templates_dir / html).is_file():
                self._variants[locale] = self._compile(env, html, f"{stem}.{locale}.txt")

    @property
    def locales(self) -> list[str]:
        return sorted(self._variants)

    def variant(self, locale: str | None) -> tuple[str, Variant]:
        """The template for a contact's language, else the default one."""
        if locale in self._variants:
            return str(locale), self._variants[str(locale)]
        return self.default_locale, self._variants[self.default_locale]

    def literal_links(self) -> tuple[str, ...]:
        """The http(s) links written out in the templates' own text, every variant: the links
        tracking may rewrite (C35). A link made from a value is left as it is: it is not known
        before the render, so the redirect could not tell it from one the campaign never had."""
        links: list[str] = []
        for variant in self._variants.values():
            for template, html_part in ((variant.html, True), (variant.text, False)):
                # This template's own text only: links of a template it pulls in stay as
                # they are (untracked).
                tree = self._env.parse(_source(self._env, str(template.name)))
                for data in tree.find_all(nodes.TemplateData):
                    links += written_links(data.data, html_part)
        return tuple(dict.fromkeys(link for link in links if len(link) <= MAX_LINK))

    def check(self) -> None:
        """Render every variant with a sample context: fail now, not at send time."""
        for locale, variant in self._variants.items():
            for template in (variant.html, variant.text):
                context = {
                    **SAMPLE_CONTEXT,
                    "contact": {**SAMPLE_CONTEXT["contact"], "locale": locale},
                }
                try:
                    template.render(context)
                except Exception as exc:
                    raise _rejection(template.name or self.name, exc) from exc

    @staticmethod
    def _compile(env: SandboxedEnvironment, html: str, text: str) -> Variant:
        try:
            variant = Variant(loaded(env, html), loaded(env, text))
        except TemplateError as exc:
            raise _rejection(getattr(exc, "name", None) or html, exc) from exc
        return Variant(variant.html, variant.text, contact_fields_read(env, (html, text)))


# The href of a link a person follows (<a>, <area>): not a stylesheet's (<link>, fetched on
# open) nor <base>'s, nor a data-href.
HREF = re.compile(
    r"""(<(?:a|area)\s(?:[^>]*?\s)?href\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""", re.IGNORECASE
)
MAX_LINK = 2048  # tracked_link.url; a longer link stays untracked
TEXT_URL = re.compile(r"""https?://[^\s<>"']+""")
URL_TRAILING = ".,;:!?)]"  # punctuation after a URL in prose is not part of it


def written_links(text: str, html_part: bool) -> list[str]:
    """The URLs of `href` attributes (HTML, unescaped) or the URLs in plain text."""
    if html_part:
        return [html.unescape(m.group(3)) for m in HREF.finditer(text)]
    return [m.group(0).rstrip(URL_TRAILING) for m in TEXT_URL.finditer(text)]


# Builtins whose output is not a function of the context: a template using one is never cached.
_UNREPEATABLE = {"random", "lipsum", "shuffle"}


def _source(env: Environment, name: str) -> str:
    return env.loader.get_source(env, name)[0] if env.loader else ""


def self_contained_tree(env: Environment, name: str) -> nodes.Template | None:
    """A template's syntax tree, or None when it pulls in another template (include, import,
    extends), whose use of the context a reading of this tree alone would miss."""
    tree = env.parse(_source(env, name))
    pulled_in = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
    return None if any(tree.find_all(pulled_in)) else tree


def contact_fields_read(
    env: SandboxedEnvironment, names: tuple[str, ...]
) -> tuple[str, ...] | None:
    """The `contact` fields these templates read, when that is all of the recipient they can
    see: `contact.first_name` or `contact['name']` with a constant name, no `contact` passed on
    whole, no other template pulled in, nothing random. Then two recipients with equal values
    for these fields get the same render, and it can be reused. None: render every time."""
    fields: set[str] = set()
    for name in names:
        tree = self_contained_tree(env, name)
        if tree is None:
            return None
        used = [f.name for f in tree.find_all((nodes.Filter, nodes.Test))]
        used += [n.name for n in tree.find_all(nodes.Name)]
        if _UNREPEATABLE.intersection(used):
            return None
        named: set[int] = set()
        for attribute in tree.find_all(nodes.Getattr):
            if isinstance(attribute.node, nodes.Name) and attribute.node.name == "contact":
                fields.add(attribute.attr)
                named.add(id(attribute.node))
        for item in tree.find_all(nodes.Getitem):
            if isinstance(item.node, nodes.Name) and item.node.name == "contact":
                key = item.arg
                if not (isinstance(key, nodes.Const) and isinstance(key.value, str)):
                    return None
                fields.add(key.value)
                named.add(id(item.node))
        for node in tree.find_all(nodes.Name):
            if node.name == "contact" and id(node) not in named:
                return None  # `contact` itself: a loop over it, a filter, a macro argument
    return tuple(sorted(fields))


def loaded(env: SandboxedEnvironment, name: str) -> Template:
    """A compiled template whose globals are a plain dict. Jinja keeps them as a ChainMap over
    the environment's and copies that into a new dict on every render, in Python (a third of a
    small template's render); a dict is copied in C. Nothing adds globals after loading, so the
    snapshot is exact; the render itself (and its sandbox) is unchanged."""
    template = env.get_template(name)
    template.globals = dict(template.globals)
    return template


def _rejection(name: str, exc: BaseException) -> InvalidInput:
    line = getattr(exc, "lineno", None)
    if line is None:  # a render error: find the template's frame in the traceback
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename.endswith(name):
                line = frame.lineno
                break
    where = f"{name}, line {line}" if line else name
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return InvalidInput(f"template {where}: {message}", field="template", reason="bad_template")
