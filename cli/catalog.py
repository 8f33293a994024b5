"""`revops catalog check [--json]`: the runbook's catalog rules over the live Stripe catalog and
the billing config. One line per problem naming the Stripe ids; exit status 1 when there is any
problem, 0 when there is none, 2 when the check itself could not run."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO

import stripe

from settings import Settings


def check_catalog_command(settings: Settings, *, as_json: bool = False, out: TextIO | None = None) -> int:
    """Run the check and print it; returns the exit status."""
    from activities.catalog import run_catalog_check
    from activities.stripe_api import stripe_client
    from cli import CliError
    from domain.billing_config import BillingConfigError, load_billing_config

    out = out or sys.stdout
    try:
        config = load_billing_config(settings.billing_config)
        result = run_catalog_check(stripe_client(settings), config)
    except BillingConfigError as exc:
        raise CliError(str(exc)) from None
    except stripe.StripeError as exc:
        raise CliError(f"The Stripe catalog could not be read: {exc.user_message or exc}") from None
    if as_json:
        json.dump({"problems": [p.to_json() for p in result.problems], "products": result.products,
                   "prices": result.prices, "meters": result.meters}, out, indent=2)
        out.write("\n")
    else:
        for problem in result.problems:
            out.write(problem.line() + "\n")
        summary = (f"{len(result.problems)} problem(s)" if result.problems else "No problems") + (
            f" in {result.products} products, {result.prices} prices and {result.meters} meters.")
        print(summary, file=sys.stderr)
    return 1 if result.problems else 0


def cmd_catalog_check(args: argparse.Namespace) -> None:
    from cli import _settings

    raise SystemExit(check_catalog_command(_settings(), as_json=args.json))


def cmd_catalog_schedule(args: argparse.Namespace) -> None:
    import asyncio
    from datetime import timedelta

    from cli import _settings
    from temporal_client import connect
    from workflows.catalog import ensure_catalog_check_schedule

    settings = _settings()

    async def create() -> str:
        client = await connect(settings)
        return await ensure_catalog_check_schedule(client, settings.temporal_task_queue,
                                                   every=timedelta(hours=args.every_hours))

    print(f"Temporal Schedule {asyncio.run(create())!r} runs the catalog check every {args.every_hours} hours.")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    catalog = commands.add_parser("catalog", help="the Stripe catalog").add_subparsers(
        dest="catalog_command", required=True)
    check = catalog.add_parser("check", help="report where the Stripe catalog breaks the runbook's rules")
    check.add_argument("--json", action="store_true", help="print the problems as JSON")
    check.set_defaults(func=cmd_catalog_check)
    schedule = catalog.add_parser("schedule", help="create the Temporal Schedule of the catalog check (idempotent)")
    schedule.add_argument("--every-hours", type=int, default=6)
    schedule.set_defaults(func=cmd_catalog_schedule)


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    """`revops catalog …` on its own (tests pass their settings); returns the exit status."""
    from cli import CliError

    parser = argparse.ArgumentParser(prog="revops")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        if settings is None or args.catalog_command != "check":
            args.func(args)
            return 0
        return check_catalog_command(settings, as_json=args.json)
    except CliError as exc:
        print(f"revops: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return int(exc.code or 0)
