"""Configuration: environment variables, optionally a `.env` file, validated once at start-up.

Every setting is declared once in `SETTINGS` below; the README's configuration table lists the
same names. A missing or malformed value raises `ConfigError` whose message is one line naming the
variable, which the CLI prints instead of a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


def _text(value: str) -> str:
    return value


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be a positive whole number")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be zero or a positive whole number")
    return number


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


def _endpoint(value: str) -> str:
    # Kept as written: a POST to a Django view without its trailing slash is redirected and lost.
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _database_url(value: str) -> str:
    if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
    if value.startswith("postgresql://"):
        value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
    return value


def _stripe_key(value: str) -> str:
    if not value.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
        raise ValueError("must be a Stripe secret or restricted key (sk_test_…, sk_live_…, rk_…)")
    return value


def _installation_id(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", value):
        raise ValueError("must be 1-40 lowercase letters, digits, - or _")
    return value


def _recognition(value: str) -> str:
    if value not in ("consumption", "ratable"):
        raise ValueError("must be consumption or ratable")
    return value


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("must look like host:port")
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str], Any]
    default: str | None
    doc: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", _database_url, f"sqlite:///{PROJECT_ROOT / 'var' / 'revops.db'}",
            "SQLAlchemy URL: SQLite by default, `postgresql+psycopg://…` in production."),
    Setting("TEMPORAL_ADDRESS", _host_port, "127.0.0.1:7233", "Temporal frontend (gRPC) host:port."),
    Setting("TEMPORAL_NAMESPACE", _text, "default", "Temporal namespace."),
    Setting("TEMPORAL_TASK_QUEUE", _text, "revops", "Task queue the worker polls."),
    Setting("TEMPORAL_API_KEY", _text, "", "Temporal Cloud API key (enables TLS).", secret=True),
    Setting("TEMPORAL_TLS", _bool, "false", "Use TLS to reach Temporal (implied by an API key)."),
    Setting("TEMPORAL_UI_URL", _url, "http://127.0.0.1:8233", "Temporal Web UI, for links from rows."),
    Setting("STRIPE_API_KEY", _stripe_key, None, "Stripe secret key; `sk_test_…` for the sandbox.",
            secret=True),
    Setting("STRIPE_API_BASE", _text, "",
            "Override Stripe's API address (the sandbox: http://127.0.0.1:12111)."),
    Setting("STRIPE_WEBHOOK_SECRET", _text, None, "Signing secret `whsec_…` of the Stripe webhook endpoint.",
            secret=True),
    Setting("INSTALLATION_ID", _installation_id, "revops",
            "Names this deployment in Stripe idempotency keys and metadata; unique per database that "
            "shares a Stripe account (staging vs production)."),
    Setting("STRIPE_MAX_NETWORK_RETRIES", _non_negative_int, "2",
            "SDK-level retries of one Stripe call (same idempotency key)."),
    Setting("STRIPE_SYNC_RATE", _positive_int, "20",
            "Revenue sync request budget per second (Stripe allows 100 live, 25 in test mode)."),
    Setting("PANDADOC_API_KEY", _text, "", "PandaDoc API key for document details.", secret=True),
    Setting("PANDADOC_API_BASE", _url, "https://api.pandadoc.com",
            "PandaDoc API address (sandbox: http://127.0.0.1:12112)."),
    Setting("PANDADOC_WEBHOOK_KEY", _text, "", "Shared key PandaDoc signs webhooks with.", secret=True),
    Setting("PANDADOC_FIELD_MAP", _text, str(PROJECT_ROOT / "config" / "pandadoc_field_map.toml"),
            "Field map from PandaDoc document details to plan fields."),
    Setting("GOOGLE_SHEET_KEY", _text, "", "Key of the Google Sheet that mirrors the table (off when empty)."),
    Setting("GOOGLE_SERVICE_ACCOUNT_FILE", _text, "", "Service-account JSON file for the sheet mirror.",
            secret=True),
    Setting("BILLING_SERVICE_URL", _endpoint, "",
            "Where the monthly org → customer → subscription mapping is POSTed (off when empty)."),
    Setting("BILLING_SERVICE_SECRET", _text, "",
            "HMAC-SHA256 key signing billing-service posts; required when BILLING_SERVICE_URL is set.",
            secret=True),
    Setting("BILLING_CONFIG", _text, str(PROJECT_ROOT / "config" / "billing.toml"),
            "Billing config: product keys → default Stripe price ids, the credit product."),
    Setting("INVOICE_POLL_SECONDS", _positive_int, "3600",
            "How often a waiting plan re-reads its invoice in case a webhook was lost."),
    Setting("MONTHLY_FINALIZE_DELAY_SECONDS", _positive_int, "3600",
            "How long the first monthly invoice stays a draft before Stripe finalizes it."),
    Setting("REPORTING_CURRENCY", _text, "usd", "Currency revenue reports are converted to."),
    Setting("REVENUE_RECOGNITION", _recognition, "consumption",
            "How a plan's prepaid payment is recognised: `consumption` (as the credit is used, unused "
            "credit as breakage at the term's end) or `ratable` (over the term by days)."),
    Setting("SECRET_KEY", _text, None, "Signs session cookies and CSRF tokens; long and random.", secret=True),
    Setting("SESSION_MINUTES", _positive_int, "480", "Idle web session lifetime."),
    Setting("SECURE_COOKIES", _bool, "true", "Send session cookies over HTTPS only (false for plain-HTTP dev)."),
    Setting("WEB_HOST", _text, "127.0.0.1", "Address `revops web` listens on."),
    Setting("WEB_PORT", _positive_int, "8000", "Port `revops web` listens on."),
    Setting("TRUSTED_PROXIES", _non_negative_int, "0",
            "How many reverse proxies stand in front of `revops web`; their X-Forwarded-For gives the "
            "client address the sign-in throttle counts (0: the connection's own address)."),
    Setting("PUBLIC_URL", _url, "http://127.0.0.1:8000", "Base URL of the web app as users reach it."),
    Setting("STRIPE_SYNC_API_KEY", _stripe_key, "",
            "Restricted read-only key for the revenue sync (docs/operations.md lists its read permissions); "
            "STRIPE_API_KEY when empty.", secret=True),
    Setting("WORKER_METRICS_ADDRESS", _host_port, "",
            "host:port where `revops worker` serves Prometheus metrics (Temporal SDK and revops); off when empty."),
)


@dataclass(frozen=True)
class Settings:
    database_url: str
    temporal_address: str
    temporal_namespace: str
    temporal_task_queue: str
    temporal_api_key: str
    temporal_tls: bool
    temporal_ui_url: str
    stripe_api_key: str
    stripe_api_base: str
    stripe_webhook_secret: str
    installation_id: str
    stripe_max_network_retries: int
    stripe_sync_rate: int
    pandadoc_api_key: str
    pandadoc_api_base: str
    pandadoc_webhook_key: str
    pandadoc_field_map: str
    google_sheet_key: str
    google_service_account_file: str
    billing_service_url: str
    billing_service_secret: str
    billing_config: str
    invoice_poll_seconds: int
    monthly_finalize_delay_seconds: int
    reporting_currency: str
    secret_key: str
    session_minutes: int
    secure_cookies: bool
    web_host: str
    web_port: int
    trusted_proxies: int
    public_url: str
    revenue_recognition: str = "consumption"
    stripe_sync_api_key: str = ""
    worker_metrics_address: str = ""

    @property
    def stripe_is_live(self) -> bool:
        return self.stripe_api_key.startswith(("sk_live_", "rk_live_"))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, *, env_file: Path | None = None) -> Settings:
        """Read settings from `environ` (default: the process environment) over an optional `.env`."""
        env_path = env_file if env_file is not None else PROJECT_ROOT / ".env"
        source: dict[str, str] = {}
        if env_path.is_file():
            source.update({k: v for k, v in dotenv_values(env_path).items() if v is not None})
        source.update(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = source.get(setting.name)
            if raw is None or raw == "":
                if setting.default is None:
                    raise ConfigError(f"{setting.name} is not set: {setting.doc}")
                raw = setting.default
            try:
                values[setting.name.lower()] = setting.parse(raw) if raw != "" else raw
            except ValueError as exc:
                shown = "(hidden)" if setting.secret else repr(raw)
                raise ConfigError(f"{setting.name} is malformed {shown}: {exc}") from None
        if values["billing_service_url"] and not values["billing_service_secret"]:
            # Posts signed with an empty key prove nothing: anyone could forge the mapping.
            raise ConfigError("BILLING_SERVICE_SECRET is not set: BILLING_SERVICE_URL is set, and its posts must "
                              "be signed with a key the billing service shares (or unset BILLING_SERVICE_URL).")
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        """The settings back as environment variables (for `var/dev.env` and child processes)."""
        out: dict[str, str] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            out[field.name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
        return out
