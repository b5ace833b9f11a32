"""Settings and business configuration: check-config names every problem."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from campaigns.config import ConfigError, parse_business_config
from mailer.settings import Settings, redact_url
from tests.conftest import EXAMPLE_CONFIG, ROOT

GOOD_SECRET = "s" * 40


def example() -> dict:
    return tomllib.loads(EXAMPLE_CONFIG.read_text())


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_business_config(data)
    return caught.value.problems


def test_example_config_is_valid():
    config = parse_business_config(example())
    assert config.sender.legal_name == "Olleke Bolleke BV"
    assert config.marketing.frequency_cap.max == 2
    assert config.marketing.third_party_purposes == {"partner_offers"}
    assert config.categories.similar_to("tea") == {"tea", "herbal-tea"}
    assert config.categories.similar_to("baby-food") == {"baby-food"}


def test_missing_sender_identity_is_named_field_by_field():
    data = example()
    del data["sender"]["enterprise_number"]
    data["sender"]["address"] = " "
    problems = problems_of(data)
    assert any("enterprise_number is missing" in p for p in problems)
    assert any("address is missing" in p for p in problems)


def test_unknown_third_party_purpose_and_undefined_category_are_named():
    data = example()
    data["marketing"]["third_party_purposes"] = ["marketplace"]
    data["categories"]["tea"] = ["herbal-tea", "coffee"]
    problems = problems_of(data)
    assert any("unknown purpose 'marketplace'" in p for p in problems)
    assert any("undefined category 'coffee'" in p for p in problems)


def test_every_problem_is_reported_at_once():
    data = example()
    data["sender"]["privacy_url"] = "http://insecure.example"
    data["sender"]["default_locale"] = "de"
    data["marketing"]["soft_opt_in_months"] = 0
    data["marketing"]["frequency_cap"] = {"max": -1, "days": 7}
    data["retention"]["typo"] = 3
    data["extra"] = {}
    problems = problems_of(data)
    assert len(problems) == 6, problems


def env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    config = tmp_path / "mailer.toml"
    config.write_text(EXAMPLE_CONFIG.read_text())
    values = {
        "MAILER_CONFIG": str(config),
        "MAILER_SECRET_KEYS": GOOD_SECRET,
        "MAILER_PUBLIC_URL": "https://mail.example.be",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def test_settings_from_env(tmp_path):
    settings = Settings.from_env(env(tmp_path, MAILER_SECRET_KEYS=f"{GOOD_SECRET},{'o' * 40}"))
    assert settings.secret_keys == (GOOD_SECRET.encode(), b"o" * 40)
    assert settings.database_url.startswith("sqlite+aiosqlite://")
    assert settings.dev_mode is False


def test_missing_secret_outside_dev_mode_is_a_problem(tmp_path):
    values = env(tmp_path)
    del values["MAILER_SECRET_KEYS"]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(values)
    assert any("MAILER_SECRET_KEYS is not set" in p for p in caught.value.problems)
    assert Settings.from_env({**values, "MAILER_DEV": "1"}).dev_mode is True


def test_environment_problems_are_all_named(tmp_path):
    values = env(
        tmp_path,
        MAILER_SECRET_KEYS="short",
        MAILER_PUBLIC_URL="http://mail.example.be",
        MAILER_SMTP_TLS="ssl",
        MAILER_SMTP_PORT="99999",
        MAILER_DATABASE_URL="mysql://x",
        MAILER_DKIM_SELECTOR="s1",
    )
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(values)
    assert len(caught.value.problems) == 6, caught.value.problems


def test_missing_config_file_is_a_problem(tmp_path):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env(tmp_path, MAILER_CONFIG=str(tmp_path / "absent.toml")))
    assert "not found" in caught.value.problems[0]


def test_secrets_stay_out_of_repr(tmp_path):
    settings = Settings.from_env(
        env(
            tmp_path,
            MAILER_SMTP_PASSWORD="hunter2-password",
            MAILER_DATABASE_URL="postgresql+asyncpg://u:dbpass@db/mailer",
        )
    )
    assert "hunter2" not in repr(settings) and GOOD_SECRET not in repr(settings)
    assert "dbpass" not in repr(settings)
    assert redact_url("postgresql+asyncpg://u:dbpass@db/x") == "postgresql+asyncpg://u:***@db/x"


def check_config(values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailer", "check-config"],
        env={"PATH": "/usr/bin:/bin", **values},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_check_config_command_names_problems_and_exits_nonzero(tmp_path):
    values = env(tmp_path)
    del values["MAILER_SECRET_KEYS"]
    Path(values["MAILER_CONFIG"]).write_text(
        EXAMPLE_CONFIG.read_text().replace('legal_name = "Olleke Bolleke BV"', "")
    )
    result = check_config(values)
    assert result.returncode == 2
    assert "MAILER_SECRET_KEYS is not set" in result.stderr
    assert "legal_name is missing" in result.stderr


def test_check_config_command_accepts_a_good_setup(tmp_path):
    result = check_config(env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_category_names_are_per_language_and_only_for_known_categories():
    config = parse_business_config(example())
    assert config.category_names.of("tea", "nl") == "thee"
    assert config.category_names.of("tea", "fr") == "thé"
    assert config.category_names.of("herbal-tea", "de") == "herbal tea"  # no name: words
    data = example()
    data["category_names"]["coffee"] = {"nl": "koffie"}
    data["category_names"]["tea"] = {"de": "Tee", "fr": ""}
    data["category_names"]["baby-food"] = "babyvoeding"
    problems = problems_of(data)
    assert "[category_names] coffee: not a category of [categories]" in problems
    assert "[category_names] tea: unknown language 'de' (nl, fr or en)" in problems
    assert "[category_names] tea.fr must be a name on one line" in problems
    assert any(p.startswith("[category_names] baby-food must map languages") for p in problems)
