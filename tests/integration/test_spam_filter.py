"""A composed campaign mail gives a mainstream spam filter's content rules nothing to object to:
SpamAssassin (Debian's package, local rules only, no network) scores the golden messages."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration
INFORMATIONAL = {"NO_RECEIVED", "NO_RELAYS", "HTML_MESSAGE"}  # no points: not objections


@pytest.mark.parametrize("golden", ["newsletter.nl.eml", "promotion.fr.eml"])
def test_spamassassin_finds_nothing_to_object_to(golden):
    assert shutil.which("spamassassin"), "install Debian's spamassassin (.ci/run does)"
    report = subprocess.run(
        ["spamassassin", "-L", "-t"],
        input=(ROOT / "tests" / "golden" / golden).read_bytes(),
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout.decode()
    details = report.split("Content analysis details:")[1]
    score = float(re.search(r"\(([-\d.]+) points", details).group(1))
    rules = set(re.findall(r"^\s*-?\d+\.\d+\s+([A-Z0-9_]+)", details, re.MULTILINE))
    assert score <= 0.5, details
    assert rules <= INFORMATIONAL, details
