"""What the benchmarks share: where things are, the PostgreSQL server, realistic names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `python bench/x.py` puts bench/ on sys.path, not the checkout: without this, `mailer` and
# `campaigns` would come from wherever the editable install points (another worktree, say).
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))
CONFIG = ROOT / "mailer.example.toml"
TEMPLATES = ROOT / "templates" / "email"

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
PG_ADMIN_DATABASE = "postgres"
SECRET = "bench-only-secret-key-0123456789-abcdefghijklmnop"  # noqa: S105 (benchmark only)

# fmt: off
FIRST_NAMES = (
    "An", "Bart", "Céline", "Dirk", "Els", "Femke", "Geert", "Hanne", "Ilse", "Jan", "Karel",
    "Lotte", "Marie", "Nathalie", "Olivier", "Pieter", "Quentin", "Ruben", "Sofie", "Thomas",
    "Ursula", "Vincent", "Wout", "Xavier", "Yasmine", "Zoë", "Amélie", "Benoît", "Chloé", "Noé",
)
LAST_NAMES = (
    "Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Claes", "Goossens",
    "Wouters", "De Smet", "Dubois", "Lambert", "Dupont", "Martin", "Simon", "Leclercq",
    "Van den Bossche", "Vermeulen", "Desmet", "Lemmens", "Hermans", "Michiels", "Renard",
)
# fmt: on
DOMAINS = ("example.be", "example.com", "example.fr", "example.nl", "example.org")
LOCALES = ("nl", "nl", "nl", "fr", "fr", "en")  # roughly the Belgian mix
WORDING = {
    "nl": "Ja, stuur mij de nieuwsbrief",
    "fr": "Oui, envoyez-moi la newsletter",
    "en": "Yes, send me the newsletter",
}


def mailer(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run `python -m mailer ARGS` to completion; return its stdout, fail loudly otherwise."""
    done = subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`mailer {' '.join(args)}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout
