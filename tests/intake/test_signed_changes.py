"""Issue 17 #6, #7, #8 through the PandaDoc sandbox, the signed webhook, the intake workflow on a
real worker and the JSON API: a document completed again after an edit, fields that failed
staying empty until a person fills them, and two forms for the same company."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from plans.service import PlanService
from store.db import unit_of_work
from store.models import Plan
from tests.fixtures.app import auth
from tests.intake.conftest import IntakeStack, eventually

ROW_WITHIN_SECONDS = 30


async def _document_row(stack: IntakeStack, **values: Any) -> tuple[str, int]:
    document_id = stack.complete_document(**values)
    result = await asyncio.wait_for(stack.intake_result(document_id), ROW_WITHIN_SECONDS)
    return document_id, result.plan_id


def _api(stack: IntakeStack, token: str, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    client = stack.app.test_client()
    response = client.open(path, method=method, json=body, headers=auth(token))
    return response.status_code, response.get_json()


def _stored(stack: IntakeStack, plan_id: int) -> Plan:
    with unit_of_work(stack.settings.database_url) as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        session.expunge(plan)
        return plan


# ------------------------------------------------------------ #6 a document completed again

async def test_issue17_6_an_edited_document_completed_again_flags_the_row_with_the_difference(
        intake_stack: IntakeStack, users: dict[str, str]) -> None:
    document_id, plan_id = await _document_row(intake_stack)
    assert _stored(intake_stack, plan_id).state == "new"

    again = intake_stack.sandbox.edit_document(document_id, price="120000.00", discount="0")
    assert again["webhook"]["status"] == 200

    def flagged() -> Plan | None:
        plan = _stored(intake_stack, plan_id)
        return plan if plan.document_change else None

    plan = await eventually(flagged, ROW_WITHIN_SECONDS)
    # Never silently applied: the row keeps the signed values it had, and waits for a person.
    assert (plan.price, plan.discount, plan.state) == (9_600_000, 20, "needs_review")
    message = plan.errors["document_change"]
    assert message.startswith("The signed document changed: discount 20% → 0%; price 96,000.00 USD → 120,000.00 USD.")
    assert plan.document_change["changes"]["price"] == {"from": "96,000.00 USD", "to": "120,000.00 USD"}

    status, body = _api(intake_stack, users["viewer"], "GET", f"/api/plans/{plan_id}")
    assert status == 200 and body["document_change"]["message"] == message
    assert body["actions"]["create_customer"]["allowed"] is False
    assert "The signed document changed" in body["actions"]["create_customer"]["reason"]

    # The same version delivered again (a PandaDoc retry with a new event id) changes nothing more.
    assert intake_stack.sandbox.state.deliver(document_id)["status"] == 200
    # A person applies the new values: the row takes them and leaves review.
    service = PlanService.for_settings(intake_stack.settings)
    applied = service.settle_document_change(plan_id, apply=True, actor="operator@example.com")
    assert (applied["price"], applied["discount"], applied["state"]) == ("120000.00", "0", "new")
    assert applied["document_change"] is None and "document_change" not in applied["errors"]


async def test_issue17_6_a_change_to_a_row_stripe_holds_is_noted_and_not_applied(intake_stack: IntakeStack) -> None:
    document_id, plan_id = await _document_row(intake_stack)
    with unit_of_work(intake_stack.settings.database_url) as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        # What the plan workflow projects once the customer and the draft invoice exist.
        plan.workflow_view = {"seq": 3, "progress": {"customer_id": "cus_Held1", "invoice_id": "in_Held1",
                                                     "invoice_status": "draft"}}
        plan.stripe_customer_id, plan.invoice_id, plan.state = "cus_Held1", "in_Held1", "invoice_draft"

    intake_stack.sandbox.edit_document(document_id, price="120000.00")

    def flagged() -> Plan | None:
        plan = _stored(intake_stack, plan_id)
        return plan if plan.document_change else None

    plan = await eventually(flagged, ROW_WITHIN_SECONDS)
    assert (plan.price, plan.state) == (9_600_000, "invoice_draft")
    note = plan.document_change
    assert note["held_by_stripe"] is True
    assert note["message"].startswith("The signed document changed: price 96,000.00 USD → 120,000.00 USD. Stripe "
                                      "already holds price")
    service = PlanService.for_settings(intake_stack.settings)
    try:
        service.settle_document_change(plan_id, apply=True, actor="operator@example.com")
    except Exception as refused:  # noqa: BLE001 - the refusal's type and sentence are what we check
        assert "after Stripe took its values" in str(refused)
    else:
        raise AssertionError("applying a change to values Stripe holds must be refused")
    kept = service.settle_document_change(plan_id, apply=False, actor="operator@example.com")
    assert kept["document_change"] is None and kept["price"] == "96000.00"


# ------------------------------------------------------------ #7 failed fields stay empty

async def test_issue17_7_fixing_one_field_leaves_the_other_failed_fields_empty_and_flagged(
        intake_stack: IntakeStack, users: dict[str, str]) -> None:
    _, plan_id = await _document_row(intake_stack, currency="Euro", term="forever", discount="twenty")
    stored = _stored(intake_stack, plan_id)
    # Empty, not the column defaults usd / 12 / 0.
    assert (stored.currency, stored.term_months, stored.discount, stored.price) == (None, None, None, None)
    assert stored.errors["_failed"] == ["credit_amount", "currency", "discount", "price", "term_months"]

    token = users["operator"]
    status, body = _api(intake_stack, token, "PATCH", f"/api/plans/{plan_id}",
                        {"currency": "EUR", "price": "96.000,00", "credit_amount": "120.000,00"})
    assert status == 200, body
    assert body["state"] == "needs_review"
    assert (body["currency"], body["price"], body["term_months"], body["discount"]) == ("eur", "96000.00", None,
                                                                                      None)
    assert body["failed"] == ["discount", "term_months"]
    assert set(body["errors"]) >= {"discount", "term_months"} and "currency" not in body["errors"]

    # A blank value for a field that failed is an error, never its default.
    status, body = _api(intake_stack, token, "PATCH", f"/api/plans/{plan_id}", {"term_months": ""})
    assert status == 422 and body["errors"]["term_months"] == "Term is required."

    status, body = _api(intake_stack, token, "PATCH", f"/api/plans/{plan_id}", {"term_months": "12 months"})
    assert status == 200 and body["state"] == "needs_review" and body["failed"] == ["discount"]
    status, body = _api(intake_stack, token, "PATCH", f"/api/plans/{plan_id}", {"discount": "20"})
    assert status == 200, body
    assert (body["state"], body["failed"], body["discount"], body["term_months"]) == ("new", [], "20", 12)


# ------------------------------------------------------------ #8 two forms for one company

async def test_issue17_8_a_second_form_for_the_same_org_is_a_possible_duplicate(
        intake_stack: IntakeStack, users: dict[str, str]) -> None:
    _, first = await _document_row(intake_stack, posthog_org_id="org-twice", customer_email="a@twice.example")
    _, second = await _document_row(intake_stack, posthog_org_id="org-twice", customer_email="b@twice.example")
    _, by_email = await _document_row(intake_stack, posthog_org_id="org-other", customer_email="A@Twice.example")
    _, unrelated = await _document_row(intake_stack, posthog_org_id="org-alone", customer_email="c@alone.example")

    status, body = _api(intake_stack, users["viewer"], "GET", f"/api/plans/{second}")
    assert status == 200
    assert body["possible_duplicates"] == [first]
    assert body["duplicate_warning"].startswith(f"Possible duplicate of row {first} (the same PostHog org id "
                                                f"org-twice).")
    status, body = _api(intake_stack, users["viewer"], "GET", f"/api/plans/{by_email}")
    assert body["possible_duplicates"] == [first]
    assert "the same customer email a@twice.example" in body["duplicate_warning"]
    status, listed = _api(intake_stack, users["viewer"], "GET", "/api/plans")
    by_id = {row["id"]: row for row in listed["plans"]}
    assert by_id[first]["possible_duplicates"] == [second, by_email]
    assert by_id[unrelated]["possible_duplicates"] == [] and by_id[unrelated]["duplicate_warning"] is None
    with unit_of_work(intake_stack.settings.database_url) as session:
        assert session.scalar(select(Plan.state).where(Plan.id == second)) == "new"  # a warning, not a block
