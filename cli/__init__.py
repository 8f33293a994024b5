"""`revops`: the one command for running, administering and operating the server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from settings import ConfigError, Settings


class CliError(Exception):
    """One line for the operator; printed without a traceback, exit status 2."""


def _settings() -> Settings:
    return Settings.load()


def _db_settings() -> Settings:
    """Database-only commands need no Stripe or session secrets."""
    import os

    env = dict(os.environ)
    for name in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "SECRET_KEY"):
        env.setdefault(name, "sk_test_unused" if name == "STRIPE_API_KEY" else "unused")
    return Settings.load(env)


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    from store.migrate import upgrade

    upgrade(_db_settings().database_url)
    print("Database is up to date.")


def cmd_users_add(args: argparse.Namespace) -> None:
    from store.accounts import AccountError, add_user, check_role
    from store.db import unit_of_work

    try:
        check_role(args.role)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    password = sys.stdin.readline().rstrip("\n")
    try:
        with unit_of_work(_db_settings().database_url) as session:
            user = add_user(session, args.email, password, args.role)
            print(f"Added {user.email} as {user.role}.")
    except AccountError as exc:
        raise CliError(str(exc)) from None


def cmd_users_sign_out(args: argparse.Namespace) -> None:
    """End every browser session of a user (a lost laptop, a leaked cookie), as the admin page does."""
    from sqlalchemy import select

    from store.accounts import revoke_user_sessions
    from store.db import unit_of_work
    from store.models import User

    email = args.email.strip().lower()
    with unit_of_work(_db_settings().database_url) as session:
        user_id = session.scalar(select(User.id).where(User.email == email))
        if user_id is None:
            raise CliError(f"No user with the email {email}: check the spelling, or list users on /admin/.")
        ended = revoke_user_sessions(session, user_id)
    print(f"{email} is signed out everywhere ({ended} session{'s' if ended != 1 else ''} ended).")


def cmd_tokens_create(args: argparse.Namespace) -> None:
    from store.accounts import AccountError, create_token
    from store.db import unit_of_work

    try:
        with unit_of_work(_db_settings().database_url) as session:
            token = create_token(session, args.email)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    print(token)
    print("Keep it now: it is shown once and stored only as a hash.", file=sys.stderr)


def cmd_tokens_revoke(args: argparse.Namespace) -> None:
    from store.accounts import AccountError, revoke_token
    from store.db import unit_of_work

    try:
        with unit_of_work(_db_settings().database_url) as session:
            revoke_token(session, args.token_id)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    print(f"Token {args.token_id} revoked.")


def cmd_web(args: argparse.Namespace) -> None:
    import waitress

    from observability.logging import configure_logging
    from web import create_app, serving_from_here

    settings = _settings()
    configure_logging(settings)
    app = create_app(settings)
    serving_from_here()
    waitress.serve(app, host=settings.web_host, port=settings.web_port, threads=8, ident="revops")


def cmd_worker(args: argparse.Namespace) -> None:
    import worker

    asyncio.run(worker.run(_settings()))


def cmd_sandbox(args: argparse.Namespace) -> None:
    if args.service == "stripe":
        from sandbox.stripe.server import serve

        serve(args.host, args.port or 12111, state_file=args.state_file,
              webhook_url=args.webhook_url, webhook_secret=args.webhook_secret)
    else:
        from sandbox.pandadoc.server import serve as serve_pandadoc

        serve_pandadoc(args.host, args.port or 12112, state_file=args.state_file,
                       webhook_url=args.webhook_url, webhook_key=args.webhook_secret)


def cmd_dev(args: argparse.Namespace) -> None:
    from cli.dev import run_dev_stack

    raise SystemExit(run_dev_stack())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="revops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    from cli import dev
    dev.register(commands)  # `dev [--no-demo]` and `demo`
    commands.add_parser("web", help="serve the web app and API").set_defaults(func=cmd_web)
    commands.add_parser("worker", help="run the Temporal worker").set_defaults(func=cmd_worker)

    sandbox = commands.add_parser("sandbox", help="serve an offline emulator of Stripe or PandaDoc")
    sandbox.add_argument("service", choices=["stripe", "pandadoc"], nargs="?", default="stripe")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=0, help="default 12111 (stripe), 12112 (pandadoc)")
    sandbox.add_argument("--state-file", default=None, help="keep state in this file across restarts")
    sandbox.add_argument("--webhook-url", default=None, help="deliver signed webhooks here")
    sandbox.add_argument("--webhook-secret", default=None, help="signing secret for those deliveries")
    sandbox.set_defaults(func=cmd_sandbox)

    db = commands.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    users = commands.add_parser("users", help="web users").add_subparsers(dest="users_command", required=True)
    add = users.add_parser("add", help="add a user; the password is read from stdin")
    add.add_argument("email")
    add.add_argument("--role", required=True, help="viewer, operator or admin")
    add.set_defaults(func=cmd_users_add)
    sign_out = users.add_parser("sign-out", help="end every browser session of a user")
    sign_out.add_argument("email")
    sign_out.set_defaults(func=cmd_users_sign_out)

    tokens = commands.add_parser("tokens", help="API tokens").add_subparsers(dest="tokens_command", required=True)
    create = tokens.add_parser("create", help="print a new API token for a user (shown once)")
    create.add_argument("email")
    create.set_defaults(func=cmd_tokens_create)
    revoke = tokens.add_parser("revoke", help="revoke an API token by id")
    revoke.add_argument("token_id", type=int)
    revoke.set_defaults(func=cmd_tokens_revoke)

    from cli import catalog, intake, revenue

    intake.register(commands)
    revenue.register(commands)
    catalog.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, CliError) as exc:
        print(f"revops: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        if getattr(exc, "errno", None) == 98 or "in use" in str(exc):
            print(f"revops: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        raise
    except KeyboardInterrupt:
        raise SystemExit(130) from None
