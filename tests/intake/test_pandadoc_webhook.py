"""Acceptance 1 of issue 7: PandaDoc completion webhooks create exactly one row per document."""

from __future__ import annotations

import json
import logging
from typing import Any

import requests
from sqlalchemy import select

from sandbox.pandadoc.server import sign
from store.db import unit_of_work
from store.models import InboundEvent, Plan
from store.plans import plan_to_json
from tests.intake.conftest import IntakeStack


def _plans(stack: IntakeStack) -> list[dict[str, Any]]:
    with unit_of_work(stack.settings.database_url) as session:
        return [plan_to_json(p) | {"pandadoc_details": p.pandadoc_details}
                for p in session.scalars(select(Plan).order_by(Plan.id))]


def _inbound(stack: IntakeStack) -> list[InboundEvent]:
    with unit_of_work(stack.settings.database_url) as session:
        return list(session.scalars(select(InboundEvent).order_by(InboundEvent.id)))


def _post(stack: IntakeStack, body: bytes, *, signature: str | None = None,
          event_id: str = "evt-1") -> requests.Response:
    signature = sign(body, stack.settings.pandadoc_webhook_key) if signature is None else signature
    return requests.post(f"{stack.url}/webhooks/pandadoc", params={"signature": signature}, data=body,
                         headers={"Content-Type": "application/json", "X-PandaDoc-Webhook-Event-Id": event_id},
                         timeout=20)


def _event(document_id: str, event: str = "document_state_changed",
           status: str = "document.completed") -> dict[str, Any]:
    return {"event": event, "data": {"id": document_id, "name": "Order Form", "status": status}}


async def test_signed_delivery_creates_one_row_with_every_mapped_field(intake_stack: IntakeStack) -> None:
    document = intake_stack.sandbox.create_document(
        company_name="Prickly Pear GmbH", customer_email="Finance@Prickly.example", credit_amount="50000.00",
        discount="10", price="45000.00", currency="EUR", start_date="2027-01-15", term="2 years",
        posthog_org_id="org-prickly", payment_schedule="monthly", credit_start="next billing cycle",
        payment_terms_days="45", stripe_customer_id="cus_PricklyOld", products=["surveys", "feature_flags"])
    delivery = intake_stack.sandbox.complete(document["id"])
    assert delivery["webhook"]["status"] == 200

    result = await intake_stack.intake_result(document["id"])
    assert result.created is True
    [row] = _plans(intake_stack)
    assert {k: row[k] for k in (
        "pandadoc_id", "company_name", "customer_email", "credit_amount", "discount", "price", "currency",
        "start_date", "term_months", "posthog_org_id", "payment_schedule", "credit_start", "payment_terms_days",
        "products", "stripe_customer_id_existing", "state", "source", "errors")} == {
        "pandadoc_id": document["id"], "company_name": "Prickly Pear GmbH",
        "customer_email": "finance@prickly.example", "credit_amount": "50000.00", "discount": "10",
        "price": "45000.00", "currency": "eur", "start_date": "2027-01-15", "term_months": 24,
        "posthog_org_id": "org-prickly", "payment_schedule": "monthly", "credit_start": "next_billing_cycle",
        "payment_terms_days": 45, "products": ["feature_flags", "surveys"],
        "stripe_customer_id_existing": "cus_PricklyOld", "state": "new", "source": "pandadoc", "errors": {}}
    # The raw details are kept with the row, and the raw delivery was stored first.
    assert row["pandadoc_details"]["id"] == document["id"]
    assert row["pandadoc_details"]["grand_total"] == {"amount": "45000.00", "currency": "EUR"}
    [inbound] = _inbound(intake_stack)
    assert inbound.source == "pandadoc" and inbound.status == "processed"
    assert inbound.event_id == delivery["webhook"]["event_id"]
    assert json.loads(inbound.body)[0]["data"]["id"] == document["id"]


async def test_bad_signature_is_401_and_stores_nothing(intake_stack: IntakeStack, caplog: Any) -> None:
    document = intake_stack.sandbox.create_document()
    body = json.dumps([_event(document["id"])]).encode()
    caplog.set_level(logging.WARNING)
    wrong = sign(body, "not-the-key")
    assert _post(intake_stack, body, signature=wrong).status_code == 401
    assert _post(intake_stack, body, signature="").status_code == 401
    assert _post(intake_stack, body + b" ", signature=sign(body, intake_stack.settings.pandadoc_webhook_key)
                 ).status_code == 401
    assert _plans(intake_stack) == [] and _inbound(intake_stack) == []
    assert intake_stack.sandbox.details_requests == 0
    refusals = [r.getMessage() for r in caplog.records if "bad or missing signature" in r.getMessage()]
    assert len(refusals) == 3
    assert not any(intake_stack.settings.pandadoc_webhook_key in r.getMessage() for r in caplog.records)


async def test_malformed_body_is_400_and_stores_nothing(intake_stack: IntakeStack, caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    for body in (b"not json", b'{"event": "document_state_changed"}', b"[]", b'["x"]',
                 b'[{"event": "document_state_changed"}]',
                 b'[{"event": "document_state_changed", "data": {"status": "document.completed"}}]'):
        response = _post(intake_stack, body)
        assert response.status_code == 400, body
        assert "Malformed PandaDoc delivery" in response.json()["error"]
    assert _plans(intake_stack) == [] and _inbound(intake_stack) == []
    assert len([r for r in caplog.records if "malformed body" in r.getMessage()]) == 6


async def test_one_completed_and_two_other_events_give_one_row(intake_stack: IntakeStack) -> None:
    completed = intake_stack.sandbox.create_document(company_name="Only One Inc")
    intake_stack.sandbox.complete(completed["id"], send_webhook=False)
    other = intake_stack.sandbox.create_document(company_name="Not Yet Ltd")
    body = json.dumps([
        _event(other["id"], status="document.sent"),
        _event(completed["id"]),
        _event(other["id"], event="recipient_completed", status="document.completed"),
    ]).encode()
    response = _post(intake_stack, body, event_id="evt-mixed")
    assert response.status_code == 200 and response.json()["documents"] == [completed["id"]]
    await intake_stack.intake_result(completed["id"])
    assert [row["company_name"] for row in _plans(intake_stack)] == ["Only One Inc"]

    # A delivery with nothing completed is acknowledged and ignored.
    response = _post(intake_stack, json.dumps([_event(other["id"], status="document.viewed")]).encode(),
                     event_id="evt-viewed")
    assert response.status_code == 200 and response.json()["documents"] == []
    assert [e.status for e in _inbound(intake_stack)] == ["processed", "ignored"]
    assert len(_plans(intake_stack)) == 1


async def test_the_same_delivery_twice_and_the_same_completion_twice_give_one_row(intake_stack: IntakeStack) -> None:
    document_id = intake_stack.complete_document()
    first = await intake_stack.intake_result(document_id)

    again = intake_stack.sandbox.redeliver(document_id)  # same event id, same body
    assert again["status"] == 200
    other_event = intake_stack.sandbox.state.deliver(document_id)  # new event id, same completion
    assert other_event["status"] == 200 and other_event["event_id"] != again["event_id"]

    assert [row["pandadoc_id"] for row in _plans(intake_stack)] == [document_id]
    assert [e.status for e in _inbound(intake_stack)] == ["processed", "duplicate", "processed"]
    # One intake run only: the workflow id is the document, and the second start was skipped.
    runs = [w async for w in intake_stack.client.list_workflows(f"WorkflowId = 'intake-{document_id}'")]
    assert len(runs) == 1
    assert first.created is True
    assert intake_stack.sandbox.details_requests == 1


async def test_a_details_fetch_failing_twice_then_succeeding_gives_one_row(intake_stack: IntakeStack) -> None:
    intake_stack.sandbox.fail_next_details(2, status=503)
    document_id = intake_stack.complete_document(company_name="Flaky Fetch Co")
    result = await intake_stack.intake_result(document_id)
    assert result.created is True
    assert intake_stack.sandbox.details_requests == 3
    assert [(r["company_name"], r["state"]) for r in _plans(intake_stack)] == [("Flaky Fetch Co", "new")]


async def test_invalid_values_give_a_needs_review_row_with_the_reasons(intake_stack: IntakeStack) -> None:
    document_id = intake_stack.complete_document(customer_email="not-an-email", discount="150",
                                                 term="forever", start_date="next spring")
    result = await intake_stack.intake_result(document_id)
    assert result.created is True and result.state == "needs_review"
    [row] = _plans(intake_stack)
    assert row["state"] == "needs_review" and row["pandadoc_id"] == document_id
    assert row["errors"]["customer_email"] == "'not-an-email' is not an email address."
    assert "150" in row["errors"]["discount"] and "0–100" in row["errors"]["discount"]
    assert "'forever' is not a term" in row["errors"]["term_months"]
    assert "'next spring' is not a date" in row["errors"]["start_date"]
    # Nothing is lost: the raw values and the raw details are on the row.
    assert row["errors"]["_raw"]["customer_email"] == "not-an-email"
    assert row["pandadoc_details"]["id"] == document_id
    assert set(result.errors) == {"customer_email", "discount", "term_months", "start_date"}
