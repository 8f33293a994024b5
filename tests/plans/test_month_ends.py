"""Issue 11 #3: a monthly plan starting on the 29th–31st billed one installment too many (start
2027-03-31, 12 months, 12,000.07 → 13 invoices adding up to 13,000.07).

The bug lived in how the subscription's `trial_end` and `cancel_at` were computed: Stripe counts
periods from the anchor (`trial_end`, clamped to the 30th of April), so a `cancel_at` on the 31st
left a stub period that Stripe billed in full. These tests create the subscription exactly as
`create_monthly_subscription` does (`monthly_window`) and run the whole term on the sandbox clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.plan_rules import add_months, installments, monthly_window


def _ts(day: date) -> int:
    return int(datetime.combine(day, time(0, 0), tzinfo=UTC).timestamp())


def _run_term(sandbox: Any, start: date, term: int, price: int) -> list[int]:
    """Installment amounts billed for a plan starting on `start`: the first (our own invoice,
    monthly amount + remainder) and every invoice the subscription makes over the term."""
    stripe = sandbox.client()
    sandbox.advance_to(_ts(start) + 3600)
    split = installments(price, term)
    customer = stripe.v1.customers.create({"email": f"month-end-{start}-{term}@example.com"})
    amounts = [split.monthly + split.remainder]
    if term == 1:
        return amounts
    monthly_price = stripe.v1.prices.create({"product": "prod_posthog_credit", "currency": "usd",
                                             "unit_amount": split.monthly, "recurring": {"interval": "month"}})
    trial_end, cancel_at = monthly_window(start, term)
    subscription = stripe.v1.subscriptions.create({
        "customer": customer.id, "items": [{"price": monthly_price.id}], "collection_method": "send_invoice",
        "days_until_due": 30, "trial_end": _ts(trial_end), "cancel_at": _ts(cancel_at)})
    sandbox.advance_to(_ts(add_months(start, term)) + 40 * 86400)
    assert stripe.v1.subscriptions.retrieve(subscription.id).status == "canceled"
    invoices = stripe.v1.invoices.list({"customer": customer.id, "limit": 100}).data
    amounts += [inv.total for inv in sorted(invoices, key=lambda i: i.created) if inv.total > 0]
    return amounts


def test_monthly_window_of_a_month_end_start() -> None:
    assert monthly_window(date(2027, 3, 31), 12) == (date(2027, 4, 30), date(2028, 3, 30))
    assert monthly_window(date(2027, 1, 31), 2) == (date(2027, 2, 28), date(2027, 3, 28))
    assert monthly_window(date(2027, 5, 15), 1) == (date(2027, 6, 15), date(2027, 6, 15))


def test_a_plan_starting_on_march_31_bills_twelve_installments(fresh_stripe_sandbox: Any) -> None:
    amounts = _run_term(fresh_stripe_sandbox, date(2027, 3, 31), 12, 1_200_007)
    assert len(amounts) == 12
    assert sum(amounts) == 1_200_007


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(day=st.integers(1, 31), term=st.integers(1, 36), price=st.integers(100, 10_000_000))
def test_installments_number_the_term_and_add_up_to_the_price(fresh_stripe_sandbox: Any, day: int, term: int,
                                                               price: int) -> None:
    sandbox = fresh_stripe_sandbox
    # The sandbox clock only moves forward: the next date (from its today) on that day of the month.
    start = datetime.fromtimestamp(sandbox.now(), UTC).date() + timedelta(days=1)
    while start.day != day:
        start += timedelta(days=1)
    amounts = _run_term(sandbox, start, term, max(price, term))
    assert len(amounts) == term, (start, term, amounts)
    assert sum(amounts) == max(price, term), (start, term, amounts)
