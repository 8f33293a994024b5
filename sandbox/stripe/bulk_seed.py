"""A realistic data set in a sandbox, fast: thousands of customers with their subscriptions (and some
schedules), invoices of several lines, invoice items, card payments (charges, PaymentIntents, balance transactions),
refunds, credit notes, disputes and customer balance transactions.

Objects are made in-process by the sandbox's own route handlers (parameters checked against the
SDK's types as over HTTP), so every object has exactly the shape and side effects (events,
balance transactions, invoice payments) the API would give it, without HTTP or JSON in between.
Creation times are spread over the last `span_days` days, oldest first, so list windows by
`created` have something to split. Random choices come from `random.Random(seed)`.

    python -m sandbox.stripe.bulk_seed --state-file var/stripe-sandbox.sqlite3 --customers 2000
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.routing import Map, Rule

from . import params as params_mod
from . import resources
from .core import Sandbox
from .router import ROUTES, Req
from .store import Obj

DAY = 86400
PRICES = (
    "price_product_analytics_default",
    "price_session_replay_default",
    "price_feature_flags_default",
    "price_surveys_default",
)


@dataclass
class SeedReport:
    customers: int = 0
    seconds: float = 0.0
    made: Counter[str] = field(default_factory=Counter)


class _Caller:
    """Route handlers called in-process: `call("POST", "/v1/customers", {...})`."""

    def __init__(self, sb: Sandbox) -> None:
        resources.load()
        self.sb = sb
        self.adapter = Map([Rule(r.path, endpoint=i, methods=[r.method]) for i, r in enumerate(ROUTES)]).bind("seed")

    def __call__(self, method: str, path: str, values: dict[str, Any] | None = None) -> Obj:
        endpoint, args = self.adapter.match(path, method=method)
        route = ROUTES[endpoint]
        validated = params_mod.validate(route.params_class, _form(values or {}))
        result = route.handler(self.sb, Req(method, path, validated, []), **args)
        obj: Obj = result[1] if isinstance(result, tuple) else result
        return obj


def _form(value: Any) -> Any:
    """Python values as the strings a form-encoded request carries (what params.validate reads)."""
    if isinstance(value, dict):
        return {k: _form(v) for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): _form(v) for i, v in enumerate(value)}
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def seed(sb: Sandbox, *, customers: int = 2000, span_days: int = 20, seed: int = 0) -> SeedReport:
    """Add `customers` customers and everything they buy; returns how many of each object were made.

    Per customer: a subscription (card customers are charged automatically, the others get
    `send_invoice` invoices), an invoice with three items (paid by card, paid out of band, or left
    open), and a customer balance transaction. Card payments are partly refunded or disputed (some
    both); paid invoices get credit notes; every tenth customer has a subscription schedule starting
    later. 2,000 customers make about 1,000 or more of every object type but schedules (200).
    """
    rng = random.Random(seed)
    call = _Caller(sb)
    report = SeedReport(customers=customers)
    t0 = time.monotonic()
    with sb.lock:
        before = Counter(o["object"] for o in dict.values(sb.state.objects))
        end = sb.now()
        start = end - span_days * DAY
        step = max(1, (end - start) // max(1, customers))
        try:
            for i in range(customers):
                sb.clock.frozen = start + i * step
                _customer_bundle(sb, call, rng, i)
                if i % 25 == 24:
                    # What fell due meanwhile (auto-finalizing drafts) happens at its own instant.
                    sb.run_until(sb.clock.frozen)
        finally:
            sb.clock.frozen = None
        sb.run_until(sb.now())
        sb.save()
        after = Counter(o["object"] for o in dict.values(sb.state.objects))
    report.made = after - before
    report.seconds = time.monotonic() - t0
    return report


def _customer_bundle(sb: Sandbox, call: _Caller, rng: random.Random, i: int) -> None:
    metadata = {"posthog_person_distinct_id": f"person-{i}"} if i % 2 == 0 else {}
    cus = call("POST", "/v1/customers", {"email": f"seed-{i}@example.com", "name": f"Seed Customer {i}",
                                         "metadata": {**metadata, "seed": str(i)}})
    card = i % 3 != 0
    if card:
        pm = call("POST", "/v1/payment_methods/pm_card_visa/attach", {"customer": cus["id"]})
        call("POST", f"/v1/customers/{cus['id']}", {"invoice_settings": {"default_payment_method": pm["id"]}})

    sub_params: dict[str, Any] = {
        "customer": cus["id"],
        "items": [{"price": rng.choice(PRICES), "quantity": rng.randint(1, 3)}],
        "metadata": {"seed": str(i)},
    }
    if not card:
        sub_params.update({"collection_method": "send_invoice", "days_until_due": 30})
    sub = call("POST", "/v1/subscriptions", sub_params)

    if i % 10 == 0:
        # A renewal already agreed: a schedule that starts when the current term ends.
        call("POST", "/v1/subscription_schedules", {
            "customer": cus["id"], "start_date": sb.now() + 60 * DAY, "end_behavior": "release",
            "default_settings": {"collection_method": "send_invoice", "invoice_settings": {"days_until_due": 30}},
            "phases": [{"items": [{"price": rng.choice(PRICES)}],
                        "duration": {"interval": "year", "interval_count": 1}}],
            "metadata": {"seed": str(i)},
        })

    inv_params: dict[str, Any] = {"customer": cus["id"], "metadata": {"seed": str(i)}}
    if not card:
        inv_params.update({"collection_method": "send_invoice", "days_until_due": 30})
    inv = call("POST", "/v1/invoices", inv_params)
    now = sb.now()
    for n in range(3):
        item: dict[str, Any] = {"customer": cus["id"], "invoice": inv["id"], "description": f"Seed line {n}"}
        if n == 0:
            item["pricing"] = {"price": rng.choice(PRICES)}
        else:
            item.update({"amount": rng.randint(500, 200_000), "currency": "usd",
                         "period": {"start": now, "end": now + rng.choice((30, 90, 365)) * DAY}})
        call("POST", "/v1/invoiceitems", item)
    call("POST", f"/v1/invoices/{inv['id']}/finalize", {})
    if card:
        paid = call("POST", f"/v1/invoices/{inv['id']}/pay", {})
        charge_id = _charge_of(sb, paid)
        sub_charge = _charge_of(sb, sb.state.objects[sub["latest_invoice"]]) if sub.get("latest_invoice") else None
        if charge_id is not None:
            charge = sb.state.objects[charge_id]
            call("POST", "/v1/refunds", {"charge": charge_id, "amount": max(1, charge["amount"] // rng.randint(2, 5))})
            if i % 4 == 0:
                _dispute(sb, rng, charge_id)
        if sub_charge is not None:
            if i % 2 == 0:
                call("POST", "/v1/refunds", {"charge": sub_charge, "amount": 100})
            else:
                _dispute(sb, rng, sub_charge)
        if i % 2 == 1:
            amount = rng.randint(100, 400)
            call("POST", "/v1/credit_notes", {"invoice": inv["id"], "amount": amount, "credit_amount": amount})
    elif i % 2 == 0:
        call("POST", f"/v1/invoices/{inv['id']}/pay", {"paid_out_of_band": True})
        amount = rng.randint(100, 400)
        call("POST", "/v1/credit_notes", {"invoice": inv["id"], "amount": amount, "out_of_band_amount": amount})
    # Left open: every other send_invoice customer's invoice is still unpaid.

    call("POST", f"/v1/customers/{cus['id']}/balance_transactions",
         {"amount": rng.choice((-1, 1)) * rng.randint(100, 5000), "currency": "usd",
          "description": "seeded adjustment"})


def _dispute(sb: Sandbox, rng: random.Random, charge_id: str) -> None:
    from .resources.payments import create_dispute  # the same path as POST /_sandbox/disputes

    create_dispute(sb, charge_id, amount=None, reason=rng.choice(("fraudulent", "product_not_received")))


def _charge_of(sb: Sandbox, invoice: Obj) -> str | None:
    """The charge that paid `invoice` (through its invoice payment's PaymentIntent)."""
    stored = sb.state.objects.peek(invoice["id"]) or {}
    for pay_id in stored.get("_payments", []):
        payment = (sb.state.objects.peek(pay_id) or {}).get("payment") or {}
        if payment.get("charge"):
            return str(payment["charge"])
        intent = sb.state.objects.peek(payment.get("payment_intent") or "")
        if intent is not None and intent.get("latest_charge"):
            return str(intent["latest_charge"])
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-file", type=Path, required=True, help="the sandbox's SQLite state file")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--span-days", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sb = Sandbox(state_file=args.state_file)
    try:
        report = seed(sb, customers=args.customers, span_days=args.span_days, seed=args.seed)
    finally:
        sb.close()
    made = ", ".join(f"{n} {kind}" for kind, n in sorted(report.made.items()))
    print(f"seeded {args.state_file} in {report.seconds:.1f} s: {made}")


if __name__ == "__main__":
    main()
