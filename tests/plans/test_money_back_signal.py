"""A refund or dispute names only the customer. A renewing customer has several plan rows on one
Stripe customer: every one of them is woken to re-check its own invoice's money (before, only the
first row was, and a second renewal noticed a refund only at its next poll)."""

from __future__ import annotations

from settings import Settings
from store.db import unit_of_work
from store.plans import create_plan
from web.stripe_webhooks import _money_back_signal

ROW = {"company_name": "Renewing Co", "customer_email": "ap@renewing.test", "credit_amount": "1200.00",
       "discount": "0", "price": "1200.00", "start_date": "2027-01-01", "term_months": 12}


def test_a_refund_wakes_every_plan_of_its_customer(settings: Settings) -> None:
    with unit_of_work(settings.database_url) as session:
        ids = []
        for _ in range(2):
            plan, checked = create_plan(session, ROW, actor="test")
            assert plan is not None, checked.errors
            plan.stripe_customer_id = "cus_renewing"
            ids.append(plan.id)
        other, _ = create_plan(session, {**ROW, "customer_email": "ap@other.test"}, actor="test")
        assert other is not None
        other.stripe_customer_id = "cus_other"
    plans, signal = _money_back_signal(settings, "charge.refunded", "evt_1",
                                       {"id": "ch_1", "customer": "cus_renewing", "amount": 120000})
    assert plans == ids
    assert signal.event_type == "charge.refunded" and signal.customer_id == "cus_renewing"
