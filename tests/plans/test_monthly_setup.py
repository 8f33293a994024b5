"""Issue 11 #2, #6, #8, #14 at the activity level, against the Stripe sandbox through the SDK:
what `create_monthly_subscription` makes, adopts and refuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.plan import PlanActivities, PlanIdentity
from domain.plan_rules import PlanFacts, Progress, StepInput
from settings import Settings


def _setup(sandbox: Any, settings: Settings, installation: str = "test", **kw: Any) -> tuple[
        PlanActivities, PlanFacts, Progress, str]:
    cfg = replace(settings, stripe_api_base=sandbox.url, stripe_api_key=sandbox.api_key,
                  installation_id=installation, monthly_finalize_delay_seconds=3600)
    acts = PlanActivities(cfg)
    today = datetime.fromtimestamp(sandbox.now(), UTC).date()
    stripe = sandbox.client()
    existing = stripe.v1.customers.create({"email": "monthly@example.com"})
    values: dict[str, Any] = {"plan_id": 7, "company_name": "Monthly Co", "customer_email": "monthly@example.com",
                              "credit_amount": 1_250_000, "price": 1_000_007, "term_months": 12,
                              "start_date": today.isoformat(), "payment_schedule": "monthly",
                              "posthog_org_id": "org_m", "stripe_customer_id_existing": existing.id}
    values.update(kw)
    facts = PlanFacts(**values)
    customer = stripe.v1.customers.create({"email": "monthly@example.com", "name": "installments"})
    now = datetime.fromtimestamp(sandbox.now(), UTC).isoformat()
    return acts, facts, Progress(customer_id=customer.id), now


def test_a_one_month_plan_records_no_invoice_as_its_subscription(fresh_stripe_sandbox: Any,
                                                                 settings: Settings) -> None:
    acts, facts, p, now = _setup(fresh_stripe_sandbox, settings, term_months=1)
    out = acts.create_monthly_subscription(StepInput(facts, p, now))
    assert out.progress.subscription_id is None
    assert out.progress.first_invoice_id and out.progress.first_invoice_id.startswith("in_")
    stripe = fresh_stripe_sandbox.client()
    assert stripe.v1.subscriptions.list({"customer": p.customer_id, "status": "all"}).data == []
    assert stripe.v1.invoices.retrieve(out.progress.first_invoice_id).total == 1_000_007


def test_a_price_under_the_lookup_key_is_adopted_only_if_it_bills_this_installment(
        fresh_stripe_sandbox: Any, settings: Settings) -> None:
    sandbox = fresh_stripe_sandbox
    stripe = sandbox.client()
    acts, facts, p, now = _setup(sandbox, settings)
    key = PlanIdentity("test", facts).monthly_price_lookup_key()
    assert "test" in key and "plan-7" in key
    # Someone edited the row's price in Stripe (or another deployment used a key like ours):
    stripe.v1.prices.create({"product": "prod_posthog_credit", "currency": "usd", "unit_amount": 99_999,
                             "recurring": {"interval": "month"}, "lookup_key": key})
    out = acts.create_monthly_subscription(StepInput(facts, p, now))
    price = stripe.v1.prices.retrieve(out.progress.monthly_price_id)
    assert price.unit_amount == 83_333 and price.currency == "usd"
    assert price.metadata["revops_installation"] == "test" and price.metadata["plan_id"] == "7"
    # A retry adopts the price it made, now under the key.
    again = acts.create_monthly_subscription(StepInput(facts, replace(p, key_generation=1), now))
    assert again.progress.monthly_price_id == price.id


def test_another_installation_never_adopts_this_rows_price(fresh_stripe_sandbox: Any, settings: Settings) -> None:
    sandbox = fresh_stripe_sandbox
    acts, facts, p, now = _setup(sandbox, settings, installation="staging")
    other, _, q, _ = _setup(sandbox, settings, installation="production")
    mine = acts.create_monthly_subscription(StepInput(facts, p, now)).progress.monthly_price_id
    theirs = other.create_monthly_subscription(StepInput(facts, q, now)).progress.monthly_price_id
    assert mine != theirs


def test_a_retry_after_stripe_forgot_the_keys_bills_the_remainder_once(fresh_stripe_sandbox: Any,
                                                                        settings: Settings) -> None:
    """#6: a future start's remainder is a line of the first installment, found again on a retry
    whose keys Stripe no longer knows (`key_generation` moves every key)."""
    sandbox = fresh_stripe_sandbox
    today = datetime.fromtimestamp(sandbox.now(), UTC).date()
    acts, facts, p, now = _setup(sandbox, settings, start_date=(today + timedelta(days=20)).isoformat())
    first = acts.create_monthly_subscription(StepInput(facts, p, now)).progress
    second = acts.create_monthly_subscription(StepInput(facts, replace(p, key_generation=3), now)).progress
    assert (second.first_invoice_id, second.subscription_schedule_id) == (
        first.first_invoice_id, first.subscription_schedule_id)
    stripe = sandbox.client()
    items = stripe.v1.invoice_items.list({"customer": p.customer_id, "limit": 100}).data
    assert sorted(i.amount for i in items) == [11, 83_333]  # 83,333 × 12 + 11 = 1,000,007
    assert [i.id for i in stripe.v1.invoices.list({"customer": p.customer_id}).data] == [first.first_invoice_id]
    assert len(stripe.v1.subscription_schedules.list({"customer": p.customer_id}).data) == 1


def test_a_start_further_back_than_the_payment_terms_is_refused(fresh_stripe_sandbox: Any,
                                                                 settings: Settings) -> None:
    sandbox = fresh_stripe_sandbox
    today = datetime.fromtimestamp(sandbox.now(), UTC).date()
    acts, facts, p, now = _setup(sandbox, settings, start_date=(today - timedelta(days=45)).isoformat())
    with pytest.raises(ApplicationError) as refused:
        acts.create_monthly_subscription(StepInput(facts, p, now))
    assert "too far in the past for monthly installments" in refused.value.message
    assert refused.value.non_retryable
    assert sandbox.client().v1.invoices.list({"customer": p.customer_id}).data == []


def test_a_failure_half_way_sends_no_invoice_and_keeps_the_partial_ids(fresh_stripe_sandbox: Any,
                                                                      settings: Settings) -> None:
    sandbox = fresh_stripe_sandbox
    stripe = sandbox.client()
    acts, facts, p, now = _setup(sandbox, settings)
    sandbox.set_faults({"rules": [{"method": "POST", "path": "/v1/subscriptions", "error_rate": 1.0, "status": 400,
                                   "error": {"type": "invalid_request_error", "message": "Refused by a test."}}]})
    with pytest.raises(ApplicationError) as failed:
        acts.create_monthly_subscription(StepInput(facts, p, now))
    sandbox.clear_faults()
    partial = failed.value.details[0]
    assert partial["monthly_price"].startswith("price_") and partial["first_invoice"].startswith("in_")
    assert "Made so far" in failed.value.message
    sandbox.advance(3 * 3600)  # past the hour a draft would have waited before finalizing
    draft = stripe.v1.invoices.retrieve(partial["first_invoice"])
    assert draft.status == "draft" and not draft.auto_advance
    later = datetime.fromtimestamp(sandbox.now(), UTC).isoformat()
    out = acts.create_monthly_subscription(StepInput(facts, p, later)).progress
    assert out.first_invoice_id == partial["first_invoice"] and out.subscription_id
    billed = [i.id for i in stripe.v1.invoices.list({"customer": p.customer_id}).data if i.total]
    assert billed == [out.first_invoice_id]
