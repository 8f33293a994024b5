"""The plan rules: installments, credit shares, due dates, the order of actions (issues 4 and 5)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.money import parse_amount
from domain.plan_rules import (
    ACTIONS,
    CREDIT_APPLIED,
    CREDIT_ARMED,
    STATE_LABELS,
    PlanFacts,
    Progress,
    action_state,
    action_states,
    add_months,
    credit_release_time,
    credit_shares,
    installments,
    plan_state,
)

TODAY = date(2026, 11, 21)


def upfront(**kw: object) -> PlanFacts:
    values: dict[str, object] = dict(plan_id=7, company_name="Acme", customer_email="ap@acme.test",
                                     credit_amount=12_000_000, price=9_600_000, discount="20",
                                     start_date="2026-12-01", products=["product_analytics"])
    values.update(kw)
    return PlanFacts(**values)  # type: ignore[arg-type]


def monthly(**kw: object) -> PlanFacts:
    return upfront(payment_schedule="monthly", stripe_customer_id_existing="cus_existing", **kw)


# ------------------------------------------------------------------ installments (issue 5, point 1)

@given(price=st.integers(min_value=1, max_value=1_000_000_000), months=st.integers(min_value=1, max_value=60))
def test_installments_add_up_to_the_price_exactly(price: int, months: int) -> None:
    split = installments(price, months)
    amounts = split.amounts
    assert len(amounts) == months
    assert sum(amounts) == price
    assert split.monthly * months + split.remainder == price
    assert max(amounts) - min(amounts) <= split.remainder
    assert 0 <= split.remainder < months
    assert amounts[0] == split.monthly + split.remainder and set(amounts[1:]) <= {split.monthly}


@given(credit=st.integers(min_value=0, max_value=1_000_000_000), months=st.integers(min_value=1, max_value=60))
def test_credit_shares_add_up_to_the_credit(credit: int, months: int) -> None:
    shares = credit_shares(credit, months)
    assert sum(shares) == credit and len(shares) == months
    assert max(shares) - min(shares) <= credit % months


@pytest.mark.parametrize(("price", "currency", "months", "monthly", "remainder"), [
    ("10000.00", "usd", 12, 83333, 4),        # 10,000.00 / 12 = 833.33 × 12 + 0.04
    ("1000.01", "usd", 12, 8333, 5),          # 83.33 × 12 + 0.05
    ("99999.99", "usd", 24, 416666, 15),      # 4,166.66 × 24 + 0.15
    ("1000000", "jpy", 12, 83333, 4),         # zero-decimal: ¥83,333 × 12 + ¥4
])
def test_named_installment_cases(price: str, currency: str, months: int, monthly: int, remainder: int) -> None:
    minor = parse_amount(price, currency)
    split = installments(minor, months)
    assert (split.monthly, split.remainder) == (monthly, remainder)
    assert sum(split.amounts) == minor


# ------------------------------------------------------------------ dates

def test_add_months_clamps_to_month_end() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 12, 1), 12) == date(2027, 12, 1)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)


def test_next_billing_cycle_time() -> None:
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    period_end = datetime(2026, 12, 15, tzinfo=UTC)
    assert credit_release_time(period_end, date(2026, 12, 1), now) == period_end
    assert credit_release_time(None, date(2026, 12, 1), now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert credit_release_time(None, date(2026, 1, 1), now) == now


# ------------------------------------------------------------------ order of actions

def test_upfront_order() -> None:
    facts, p = upfront(), Progress()
    allowed = {a for a, (ok, _) in action_states(facts, p, TODAY).items() if ok}
    assert allowed == {"create_customer"}
    p.customer_id = "cus_1"
    assert action_state("create_invoice", facts, p, TODAY)[0]
    assert not action_state("send_invoice", facts, p, TODAY)[0]
    p.invoice_id, p.invoice_status = "in_1", "draft"
    assert action_state("send_invoice", facts, p, TODAY)[0]
    assert action_state("apply_credit", facts, p, TODAY) == (
        False, "Send the invoice first: credits are only given against a sent invoice.")
    p.invoice_status = "open"
    ok, reason = action_state("apply_credit", facts, p, TODAY)
    assert ok and "armed" in reason
    assert not action_state("schedule_subscription", facts, p, TODAY)[0]
    p.invoice_status, p.credit = "paid", CREDIT_ARMED
    assert not action_state("apply_credit", facts, p, TODAY)[0]
    assert action_state("schedule_subscription", facts, p, TODAY)[0]
    assert plan_state(facts, p, TODAY) == "paid"
    p.credit, p.schedule_id = CREDIT_APPLIED, "sub_sched_1"
    assert plan_state(facts, p, TODAY) == "done"
    assert not any(ok for ok, _ in action_states(facts, p, TODAY).values())


def test_due_date_in_the_past_is_refused_with_a_sentence() -> None:
    facts = upfront(start_date="2026-09-01", payment_terms_days=30)
    ok, reason = action_state("create_invoice", facts, Progress(customer_id="cus_1"), TODAY)
    assert not ok
    assert reason == ("The invoice would be due on 2026-10-01 (start date 2026-09-01 + 30 days of payment "
                      "terms), which is in the past; change the start date or the payment terms first.")


def test_monthly_order_and_existing_customer_required() -> None:
    ok, reason = action_state("create_customer", upfront(payment_schedule="monthly"), Progress(), TODAY)
    assert not ok and "Stripe ID - existing" in reason
    facts, p = monthly(), Progress()
    assert action_state("create_customer", facts, p, TODAY)[0]
    assert not action_state("create_invoice", facts, p, TODAY)[0]
    assert "monthly plan" in action_state("create_invoice", facts, p, TODAY)[1]
    p.customer_id = "cus_new"
    assert action_state("create_monthly_subscription", facts, p, TODAY)[0]
    assert not action_state("apply_credit_monthly", facts, p, TODAY)[0]
    p.subscription_id = "sub_1"
    assert action_state("apply_credit_monthly", facts, p, TODAY)[0]
    assert not action_state("sync_billing_service", facts, p, TODAY)[0]
    p.credit = CREDIT_APPLIED
    ok, reason = action_state("sync_billing_service", facts, p, TODAY)
    assert not ok and reason.startswith("The row has no PostHog org id")
    facts.posthog_org_id = "org_1"
    assert action_state("sync_billing_service", facts, p, TODAY)[0]


def test_failed_step_offers_only_retry() -> None:
    p = Progress(customer_id="cus_1", failed_action="create_invoice", failed_message="No such customer.")
    states = action_states(upfront(), p, TODAY)
    assert [a for a, (ok, _) in states.items() if ok] == ["retry_step"]
    assert "No such customer." in states["create_invoice"][1]
    assert plan_state(upfront(), p, TODAY) == "step_failed"


def test_every_state_has_a_label_and_every_action_a_reason() -> None:
    facts, p = upfront(), Progress()
    for action, (_, reason) in action_states(facts, p, TODAY).items():
        assert action in ACTIONS and reason.endswith(".")
    assert plan_state(facts, p, TODAY) in STATE_LABELS


def test_an_unpaid_invoice_past_its_due_date_is_overdue() -> None:
    p = Progress(customer_id="cus_1", invoice_id="in_1", invoice_status="open", invoice_due_date="2026-12-31")
    assert plan_state(upfront(), p, date(2026, 12, 31)) == "awaiting_payment"
    assert plan_state(upfront(), p, date(2027, 1, 1)) == "overdue"
    p.invoice_status = "paid"
    assert plan_state(upfront(), p, date(2027, 1, 1)) == "paid"


def test_fields_stripe_already_holds_are_locked() -> None:
    from domain.plan_rules import locked_fields

    assert locked_fields(upfront(), Progress()) == {}
    p = Progress(customer_id="cus_1", invoice_id="in_1", credit=CREDIT_ARMED)
    locked = locked_fields(upfront(), p)
    assert {"price", "start_date", "term_months", "credit_amount", "stripe_customer_id_existing"} <= set(locked)
    assert "company_name" not in locked and "products" not in locked
    assert locked["price"].startswith("in_1 was already made from it in Stripe")
