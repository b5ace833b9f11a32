"""The Jinja2 environment of the recipient pages (templates/pages/, autoescaped)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape


def page_environment(templates_dir: Path) -> Environment:
    return Environment(
        loader=FileSystemLoader(str(templates_dir.parent / "pages")),
        autoescape=select_autoescape(default_for_string=True, default=True),
        auto_reload=False,
    )
