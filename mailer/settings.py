"""Settings: environment variables (fixed names, see API.md) plus the business TOML file.

No module-level instance: `Settings.from_env()` is called by the command line, and tests build
settings directly and pass them to `create_app`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from campaigns.config import BusinessConfig, ConfigError, parse_business_config

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/mailer.db"
DEV_SECRET = "dev-only-insecure-secret-key-change-me-0123456789"  # noqa: S105 (dev mode only)
TLS_MODES = ("none", "starttls", "tls")
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class Settings:
    business: BusinessConfig
    database_url: str = DEFAULT_DATABASE_URL
    secret_keys: tuple[bytes, ...] = (DEV_SECRET.encode(),)
    config_path: Path = Path("mailer.toml")
    public_url: str = "http://localhost:8000"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = field(default=None, repr=False)
    smtp_password: str | None = field(default=None, repr=False)
    smtp_tls: str = "none"
    inbound_host: str = "127.0.0.1"
    inbound_port: int = 2525
    dkim_selector: str | None = None
    dkim_key_file: Path | None = None
    dev_mode: bool = False
    worker_id: str = ""  # MAILER_WORKER_ID: names this sending process; else host:pid
    templates_dir: Path = Path("templates/email")

    def __repr__(self) -> str:  # keep secrets and credentials out of logs and tracebacks
        return f"Settings(database={redact_url(self.database_url)}, dev_mode={self.dev_mode})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment and the TOML file; raise ConfigError naming every problem."""
        env = os.environ if env is None else env
        problems: list[str] = []
        dev_mode = env.get("MAILER_DEV", "").lower() in ("1", "true", "yes")

        raw_keys = [k.strip() for k in env.get("MAILER_SECRET_KEYS", "").split(",") if k.strip()]
        if not raw_keys:
            if dev_mode:
                raw_keys = [DEV_SECRET]
            else:
                problems.append(
                    "MAILER_SECRET_KEYS is not set: it signs tokens and keys the suppression list"
                    " (set MAILER_DEV=1 for a local trial with an insecure built-in key)"
                )
        for i, key in enumerate(raw_keys):
            if len(key) < MIN_SECRET_LENGTH:
                problems.append(
                    f"MAILER_SECRET_KEYS: key #{i + 1} is shorter than"
                    f" {MIN_SECRET_LENGTH} characters"
                )

        public_url = env.get("MAILER_PUBLIC_URL", "http://localhost:8000").rstrip("/")
        if not public_url.startswith(("https://", "http://")):
            problems.append("MAILER_PUBLIC_URL must be an http(s) URL")
        elif not dev_mode and not public_url.startswith("https://"):
            problems.append(
                "MAILER_PUBLIC_URL must be https:// (unsubscribe links need HTTPS, RFC 8058)"
            )

        database_url = env.get("MAILER_DATABASE_URL", DEFAULT_DATABASE_URL)
        if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            problems.append(
                "MAILER_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )

        smtp_tls = env.get("MAILER_SMTP_TLS", "none")
        if smtp_tls not in TLS_MODES:
            problems.append(f"MAILER_SMTP_TLS must be one of {', '.join(TLS_MODES)}")
        smtp_port = _port(env, "MAILER_SMTP_PORT", 25, problems)
        inbound_port = _port(env, "MAILER_INBOUND_PORT", 2525, problems, allow_zero=True)

        dkim_selector = env.get("MAILER_DKIM_SELECTOR") or None
        dkim_key = env.get("MAILER_DKIM_KEY_FILE") or None
        if bool(dkim_selector) != bool(dkim_key):
            problems.append("DKIM needs both MAILER_DKIM_SELECTOR and MAILER_DKIM_KEY_FILE")
        if dkim_key and not Path(dkim_key).is_file():
            problems.append(f"MAILER_DKIM_KEY_FILE: no such file {dkim_key}")

        templates_dir = Path(env.get("MAILER_TEMPLATES_DIR", "templates/email"))
        if not templates_dir.is_dir():
            problems.append(f"MAILER_TEMPLATES_DIR: no directory {templates_dir}")

        config_path = Path(env.get("MAILER_CONFIG", "mailer.toml"))
        business = _load_business(config_path, problems)
        if problems or business is None:
            raise ConfigError(problems)
        return cls(
            business=business,
            database_url=database_url,
            secret_keys=tuple(k.encode() for k in raw_keys),
            config_path=config_path,
            public_url=public_url,
            smtp_host=env.get("MAILER_SMTP_HOST", "localhost"),
            smtp_port=smtp_port,
            smtp_username=env.get("MAILER_SMTP_USERNAME") or None,
            smtp_password=env.get("MAILER_SMTP_PASSWORD") or None,
            smtp_tls=smtp_tls,
            inbound_host=env.get("MAILER_INBOUND_HOST", "127.0.0.1"),
            inbound_port=inbound_port,
            dkim_selector=dkim_selector,
            dkim_key_file=Path(dkim_key) if dkim_key else None,
            dev_mode=dev_mode,
            worker_id=env.get("MAILER_WORKER_ID", "").strip()[:100],
            templates_dir=templates_dir,
        )


def _port(
    env: Mapping[str, str], name: str, default: int, problems: list[str], allow_zero: bool = False
) -> int:
    """A port number; 0 (where allowed) switches the listener off."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw == "0" and allow_zero:
        return 0
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        problems.append(f"{name} must be a port number (1-65535)")
        return default
    return int(raw)


def _load_business(path: Path, problems: list[str]) -> BusinessConfig | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(
            f"MAILER_CONFIG: {path} not found (copy mailer.example.toml to mailer.toml)"
        )
        return None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"MAILER_CONFIG: {path} cannot be read: {exc}")
        return None
    try:
        return parse_business_config(data)
    except ConfigError as exc:
        problems.extend(f"{path}: {problem}" for problem in exc.problems)
        return None


def redact_url(url: str) -> str:
    """A database URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
