"""Import rules between the layers, read from the source with `ast` (nothing is imported):

- `campaigns/` is the pure domain: it never imports `mailer`, `litestar`, `aiosmtplib` or
  `apscheduler`;
- `mailer/delivery/` never imports the web layer, the worker, the listener or the app; the
  worker and the listener never import the web layer; settings and the database nothing above
  them;
- in the domain, the audience reads nothing of `sending/` but its states, and the state machine
  and the suppression predicate are leaves;
- only the entry points (`mailer/app.py`, `mailer/__main__.py`) import `mailer.services`: the
  rest of `mailer/` and `campaigns/` is given what it needs.

Every import counts: `import x`, `from x import y`, relative imports, imports inside functions
or `if TYPE_CHECKING:` blocks, and `importlib.import_module`/`__import__` of a literal name.
`tests/` and `bench/` are not checked."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Rule:
    name: str
    under: tuple[str, ...]  # directories, from the root, whose .py files are checked
    forbidden: tuple[str, ...]  # modules that may not be imported (their submodules neither)
    exempt: frozenset[str] = frozenset()  # files, from the root, the rule does not apply to


RULES = (
    Rule(
        "campaigns/ (the domain) imports no framework and nothing of mailer",
        ("campaigns",),
        ("mailer", "litestar", "aiosmtplib", "apscheduler"),
    ),
    Rule(
        "mailer/delivery/ reaches no outer part of the shell (web, worker, listener, app)",
        ("mailer/delivery",),
        ("mailer.web", "mailer.scheduler", "mailer.inbound", "mailer.app", "mailer.__main__"),
    ),
    Rule(
        "only the entry points import mailer.services",
        ("mailer", "campaigns"),
        ("mailer.services",),
        frozenset({"mailer/app.py", "mailer/__main__.py"}),
    ),
    Rule(
        "the worker and the inbound listener do not import the web layer",
        ("mailer/scheduler.py", "mailer/inbound.py"),
        ("mailer.web", "mailer.app", "mailer.__main__"),
    ),
    Rule(
        "the shell's base (settings, database) imports nothing above it",
        ("mailer/settings.py", "mailer/db.py"),
        ("mailer.web", "mailer.delivery", "mailer.scheduler", "mailer.inbound", "mailer.app"),
    ),
    Rule(
        "the audience reads nothing of sending but its states (sending imports audience)",
        ("campaigns/audience",),
        tuple(f"campaigns.sending.{m}" for m in ("campaigns", "lifecycle", "ledger", "content")),
    ),
    Rule(
        "the state machine and the suppression predicate are leaves of the domain",
        ("campaigns/sending/states.py", "campaigns/suppression/predicate.py"),
        (
            "campaigns.evidence",
            "campaigns.audience",
            "campaigns.recipients",
            "campaigns.suppression.entries",
            *(f"campaigns.sending.{m}" for m in ("campaigns", "lifecycle", "ledger", "content")),
        ),
    ),
)


@dataclass(frozen=True)
class Import:
    line: int
    text: str  # the statement as written
    names: frozenset[str]  # the absolute module names it can import


def module_of(root: Path, path: Path) -> tuple[str, str]:
    """(the module's dotted name, the package its relative imports start from)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def absolute(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    base = package.split(".") if package else []
    if level - 1 > len(base) or (level - 1 == len(base) and not module):
        return "<beyond the top-level package>"
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def imports(root: Path, path: Path) -> Iterator[Import]:
    """Every import in the file, wherever it stands (ast.walk reaches into functions, classes
    and `if` blocks)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    _, package = module_of(root, path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, f"import {alias.name}", frozenset({alias.name}))
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node.module, node.level, package)
            # `from a import b` imports a, and a.b when b is a submodule.
            names = {base} | {f"{base}.{a.name}".lstrip(".") for a in node.names if a.name != "*"}
            yield Import(node.lineno, ast.unparse(node), frozenset(names))
        elif isinstance(node, ast.Call) and _dynamic_import(node):
            name = node.args[0].value  # type: ignore[attr-defined]
            yield Import(node.lineno, ast.unparse(node), frozenset({name}))


def _dynamic_import(node: ast.Call) -> bool:
    func = node.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    return (
        called in ("import_module", "__import__")
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and not node.args[0].value.startswith(".")
    )


def within(name: str, module: str) -> bool:
    """`name` is `module` or one of its submodules (or a name in one of them)."""
    return name == module or name.startswith(f"{module}.")


def violations(root: Path, rule: Rule) -> list[str]:
    """`path:line: statement  (forbidden modules)` for every import that breaks the rule."""
    found = []
    files = sorted(
        {
            p
            for d in rule.under
            for p in ((root / d).rglob("*.py") if (root / d).is_dir() else [root / d])
        }
    )
    for path in files:
        relative = path.relative_to(root).as_posix()
        if relative in rule.exempt:
            continue
        for statement in sorted(imports(root, path), key=lambda i: i.line):
            bad = [f for f in rule.forbidden if any(within(n, f) for n in statement.names)]
            if bad:
                found.append(f"{relative}:{statement.line}: {statement.text}  ({', '.join(bad)})")
    return found


def report(rule: Rule, found: list[str]) -> str:
    return f"{rule.name}: {len(found)} imports break it\n  " + "\n  ".join(found)


@pytest.mark.parametrize(
    "rule", RULES, ids=["domain", "delivery", "services", "worker", "base", "audience", "leaves"]
)
def test_layer_rule(rule):
    found = violations(ROOT, rule)
    assert not found, report(rule, found)


SYNTHETIC = {
    "campaigns/__init__.py": "",
    "campaigns/plain.py": "import litestar\nfrom aiosmtplib import SMTP\n",
    "campaigns/hidden.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from mailer.services import Services\n"
        "\n"
        "def later():\n"
        "    import apscheduler.schedulers.asyncio\n"
        "    return apscheduler\n"
    ),
    "campaigns/clean.py": (
        "import asyncio\nimport mailerx\nfrom campaigns import plain\nfrom . import hidden\n"
    ),
    "mailer/__init__.py": "",
    "mailer/app.py": "from mailer.services import Services\n",  # an entry point
    "mailer/__main__.py": "def main():\n    from . import services\n",  # an entry point
    "mailer/services.py": "import litestar\n",
    "mailer/scheduler.py": "from . import services\n",
    "mailer/web/__init__.py": "",
    "mailer/web/pages.py": "from mailer.services import Services\n",
    "mailer/delivery/__init__.py": "",
    "mailer/delivery/relative.py": (
        "from ..web import pages\n"
        "from .. import web\n"
        "from ..services import Services\n"
        "from mailer import services_extra, settings\n"
    ),
    "mailer/delivery/absolute.py": "import mailer.web.pages as pages\n",
    "mailer/delivery/dynamic.py": (
        "import importlib\n\ndef load():\n    return importlib.import_module('mailer.web')\n"
    ),
    "tests/test_x.py": "import mailer.services\nimport litestar\n",  # not checked
    "bench/run.py": "from mailer.services import Services\n",  # not checked
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name, text in SYNTHETIC.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checker_catches_every_kind_of_import(tree):
    domain, delivery, services = (violations(tree, rule) for rule in RULES[:3])
    assert domain == [
        "campaigns/hidden.py:3: from mailer.services import Services  (mailer)",
        "campaigns/hidden.py:6: import apscheduler.schedulers.asyncio  (apscheduler)",
        "campaigns/plain.py:1: import litestar  (litestar)",
        "campaigns/plain.py:2: from aiosmtplib import SMTP  (aiosmtplib)",
    ]
    assert delivery == [
        "mailer/delivery/absolute.py:1: import mailer.web.pages  (mailer.web)",
        "mailer/delivery/dynamic.py:4: importlib.import_module('mailer.web')  (mailer.web)",
        "mailer/delivery/relative.py:1: from ..web import pages  (mailer.web)",
        "mailer/delivery/relative.py:2: from .. import web  (mailer.web)",
    ]
    assert services == [  # not the entry points, not tests/ or bench/
        "campaigns/hidden.py:3: from mailer.services import Services  (mailer.services)",
        "mailer/delivery/relative.py:3: from ..services import Services  (mailer.services)",
        "mailer/scheduler.py:1: from . import services  (mailer.services)",
        "mailer/web/pages.py:1: from mailer.services import Services  (mailer.services)",
    ]


def test_the_failure_message_lists_every_offending_file_and_import(tree):
    rule = RULES[2]
    message = report(rule, violations(tree, rule))
    assert message.startswith("only the entry points import mailer.services: 4 imports break it")
    for where in (
        "campaigns/hidden.py:3",
        "mailer/delivery/relative.py:3",
        "mailer/scheduler.py:1",
    ):
        assert where in message
    assert "mailer/web/pages.py:1: from mailer.services import Services" in message


def test_relative_imports_resolve_from_the_files_package():
    assert absolute("web", 2, "mailer.delivery") == "mailer.web"
    assert absolute(None, 1, "mailer") == "mailer"
    assert absolute("x", 1, "mailer.delivery") == "mailer.delivery.x"
    assert absolute("os", 0, "mailer") == "os"
    assert absolute(None, 3, "mailer.delivery") == "<beyond the top-level package>"
    assert module_of(ROOT, ROOT / "mailer" / "delivery" / "__init__.py") == (
        "mailer.delivery",
        "mailer.delivery",
    )
    assert module_of(ROOT, ROOT / "mailer" / "app.py") == ("mailer.app", "mailer")
