"""Issue 11 defect 5: the row page and the products form enforce the locks the API enforces.

Once Stripe holds a value (the invoice exists, the credit is armed, the schedule is made), the
row form refuses to change it with the API's sentence beside the field, shows it read-only with
the reason, and the products form refuses too. Through HTTP into the real app and database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from settings import Settings
from store.db import unit_of_work
from store.models import AuditEntry, Plan
from tests.fixtures.app import auth
from tests.web.conftest import VALID_PLAN

SignedIn = Callable[[str], tuple[FlaskClient, str]]

INVOICED = {"customer_id": "cus_Lock1", "invoice_id": "in_Lock1", "invoice_status": "draft"}


def _project(settings: Settings, plan_id: int, **progress: Any) -> None:
    """What the plan workflow writes onto the row once it made these Stripe objects."""
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        plan.stripe_customer_id = progress.get("customer_id")
        plan.invoice_id = progress.get("invoice_id")
        plan.subscription_schedule_id = progress.get("schedule_id")
        plan.state = "invoice_draft"
        plan.workflow_view = {"progress": progress, "seq": 4}


def _row(settings: Settings, plan_id: int) -> Plan:
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        s.expunge(plan)
        return plan


def _edits(settings: Settings, plan_id: int) -> int:
    with unit_of_work(settings.database_url) as s:
        return len(s.query(AuditEntry).filter_by(plan_id=plan_id, action="edit_row").all())


def _form(**changes: str) -> dict[str, Any]:
    return {**VALID_PLAN, "currency": "usd", "payment_schedule": "upfront", "credit_start": "immediately",
            "credit_release": "all", "payment_terms_days": "30", **changes}


def test_after_the_invoice_the_form_refuses_price_schedule_and_customer_like_the_api(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings, users: dict[str, str]
) -> None:
    plan_id = add_plan()
    _project(settings, plan_id, **INVOICED)
    client, token = signed_in("operator")
    api = client.patch(f"/api/plans/{plan_id}", json={"price": "90000.00"}, headers=auth(users["operator"]))
    assert api.status_code == 422
    sentence = api.get_json()["errors"]["price"]
    assert sentence == ("Price cannot change any more: in_Lock1 was already made from it in Stripe; change it "
                        "there and leave the row as it is.")

    for name, value in [("price", "90000.00"), ("payment_schedule", "monthly"),
                        ("stripe_customer_id_existing", "cus_Other9"), ("start_date", "2031-01-01"),
                        ("term_months", "24")]:
        response = client.post(f"/plans/{plan_id}", data={**_form(**{name: value}), "accept_warnings": "1",
                                                          "csrf_token": token})
        assert response.status_code == 422, name
        html = response.get_data(as_text=True)
        beside = re.search(rf'<p class="error" id="err-{name}">([^<]+)</p>', html)
        assert beside, name
        assert "cannot change any more" in beside.group(1), name
        if name == "price":
            assert beside.group(1) == sentence  # the API's sentence, word for word
    after = _row(settings, plan_id)
    assert (after.price, after.payment_schedule, after.stripe_customer_id_existing, after.term_months) == (
        9_600_000, "upfront", None, 12)
    assert _edits(settings, plan_id) == 0

    # What Stripe does not hold yet still changes through the same form.
    response = client.post(f"/plans/{plan_id}", data={**_form(company_name="Acme Renamed"), "csrf_token": token})
    assert response.status_code == 302
    assert _row(settings, plan_id).company_name == "Acme Renamed"


def test_after_the_credit_is_armed_the_credit_amount_is_locked_too(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan()
    _project(settings, plan_id, **{**INVOICED, "invoice_status": "open", "credit": "armed"})
    client, token = signed_in("operator")
    response = client.post(f"/plans/{plan_id}", data={**_form(credit_amount="130000.00"), "accept_warnings": "1",
                                                      "csrf_token": token})
    assert response.status_code == 422
    assert re.search(r'id="err-credit_amount">Credit amount cannot change any more: the credit was already armed',
                     response.get_data(as_text=True))
    assert _row(settings, plan_id).credit_amount == 12_000_000


def test_locked_fields_are_read_only_with_the_reason(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan()
    _project(settings, plan_id, **INVOICED)
    client, _ = signed_in("operator")
    html = client.get(f"/plans/{plan_id}").get_data(as_text=True)
    price = re.search(r'<div class="field\s+locked" id="field-price">.*?</div>', html, re.S)
    assert price, "the price field is not marked locked"
    assert re.search(r'name="price" value="96000.00".*?readonly', price.group(0), re.S)
    assert "Locked: in_Lock1 was already made from it in Stripe" in price.group(0)
    assert 'aria-describedby="lock-price' in price.group(0)
    schedule = re.search(r'id="field-payment_schedule">.*?</div>', html, re.S)
    assert schedule and "disabled" in schedule.group(0) and "cus_Lock1 was already set up" in schedule.group(0)
    company = re.search(r'id="field-company_name">.*?</div>', html, re.S)
    assert company and "readonly" not in company.group(0)  # still editable


def test_products_form_is_refused_once_the_schedule_exists(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings, users: dict[str, str]
) -> None:
    plan_id = add_plan(products=["session_replay"])
    _project(settings, plan_id, **{**INVOICED, "invoice_status": "paid", "credit": "applied",
                                   "schedule_id": "sub_sched_L1"})
    client, token = signed_in("operator")
    response = client.post(f"/plans/{plan_id}/products", data={"products": ["surveys"], "csrf_token": token,
                                                               "next": "/"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert (f"Products of row {plan_id} were not saved: Products cannot change any more: the subscription "
            f"schedule sub_sched_L1 was already made from them.") in page
    assert _row(settings, plan_id).products == ["session_replay"]
    # The table shows the checkboxes disabled, with the reason, and no save button for that row.
    row = re.search(rf'<tr id="plan-{plan_id}".*?</tr>', client.get("/").get_data(as_text=True), re.S)
    assert row
    assert re.search(r'value="surveys"\s+disabled', row.group(0))
    assert "Locked: the subscription schedule sub_sched_L1 was already made from them." in row.group(0)
    assert "save-products" not in row.group(0)
    # The row form's product checkboxes are locked the same way.
    edit = client.post(f"/plans/{plan_id}", data={**_form(), "products": ["surveys"], "_products": "1",
                                                  "csrf_token": token})
    assert edit.status_code == 422 and 'id="err-products"' in edit.get_data(as_text=True)
    assert _row(settings, plan_id).products == ["session_replay"]
    # And the API answers the same.
    api = client.patch(f"/api/plans/{plan_id}", json={"products": ["surveys"]}, headers=auth(users["operator"]))
    assert api.status_code == 422 and "sub_sched_L1" in api.get_json()["errors"]["products"]


def test_before_the_schedule_the_products_form_saves(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan()
    _project(settings, plan_id, **INVOICED)
    client, token = signed_in("operator")
    client.post(f"/plans/{plan_id}/products", data={"products": ["surveys"], "csrf_token": token})
    assert _row(settings, plan_id).products == ["surveys"]
