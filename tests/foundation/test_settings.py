"""Start-up configuration: a missing or malformed value is one line naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from settings import SETTINGS, ConfigError, Settings
from tests.fixtures.app import BASE_ENV

NO_FILE = Path("/nonexistent")


def test_defaults_load_with_only_the_secrets_set() -> None:
    settings = Settings.load(BASE_ENV, env_file=NO_FILE)
    assert settings.temporal_address == "127.0.0.1:7233"
    assert settings.invoice_poll_seconds == 3600
    assert settings.secure_cookies is False


@pytest.mark.parametrize("missing", ["STRIPE_API_KEY", "SECRET_KEY", "STRIPE_WEBHOOK_SECRET"])
def test_missing_required_setting_names_it(missing: str) -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != missing}
    with pytest.raises(ConfigError) as info:
        Settings.load(env, env_file=NO_FILE)
    assert str(info.value).startswith(f"{missing} is not set")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("STRIPE_API_KEY", "pk_test_123"), ("INVOICE_POLL_SECONDS", "soon"), ("TEMPORAL_ADDRESS", "nohost"),
     ("DATABASE_URL", "mysql://x"), ("SECURE_COOKIES", "maybe"), ("PANDADOC_API_BASE", "ftp://x")],
)
def test_malformed_setting_names_it_and_hides_secrets(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({**BASE_ENV, name: value}, env_file=NO_FILE)
    message = str(info.value)
    assert message.startswith(f"{name} is malformed")
    secret = next(s for s in SETTINGS if s.name == name).secret
    assert (value in message) != secret


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TEMPORAL_NAMESPACE=from-file\nTEMPORAL_TASK_QUEUE=file-queue\n")
    settings = Settings.load({**BASE_ENV, "TEMPORAL_TASK_QUEUE": "env-queue"}, env_file=env_file)
    assert settings.temporal_namespace == "from-file"
    assert settings.temporal_task_queue == "env-queue"


def test_cli_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SECRET_KEY": "x", "STRIPE_WEBHOOK_SECRET": "x"}
    result = subprocess.run([sys.executable, "-c", "from cli import main; main()", "worker"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "STRIPE_API_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_billing_service_url_without_a_secret_refuses_to_start() -> None:
    # Posts signed with an empty key could be forged by anyone who can reach the billing service.
    with pytest.raises(ConfigError) as info:
        Settings.load({**BASE_ENV, "BILLING_SERVICE_URL": "https://billing.internal/mapping/"}, env_file=NO_FILE)
    message = str(info.value)
    assert message.startswith("BILLING_SERVICE_SECRET is not set") and "BILLING_SERVICE_URL" in message
    assert "\n" not in message
    signed = Settings.load({**BASE_ENV, "BILLING_SERVICE_URL": "https://billing.internal/mapping/",
                            "BILLING_SERVICE_SECRET": "shared-key"}, env_file=NO_FILE)
    assert signed.billing_service_url == "https://billing.internal/mapping/"  # the trailing slash is kept
    assert Settings.load(BASE_ENV, env_file=NO_FILE).billing_service_url == ""  # off: no secret needed


def test_billing_service_url_must_be_http() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({**BASE_ENV, "BILLING_SERVICE_URL": "billing.internal", "BILLING_SERVICE_SECRET": "k"},
                      env_file=NO_FILE)
    assert str(info.value).startswith("BILLING_SERVICE_URL is malformed")
