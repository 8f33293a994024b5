"""Issue 15: plans in the Temporal UI — search attributes an engineer queries, the workflow's
current details and its activities' summaries — on the dev server, through the live stack."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from tests.fixtures.stack import LiveStack
from tests.plans.helpers import act, save_history, upfront_plan
from workflows.plan import COMPANY_NAME, PAYMENT_SCHEDULE, PLAN_ID, PLAN_STATE, STRIPE_CUSTOMER_ID


async def _ids(client: Client, query: str, expect: set[str], timeout: float = 20) -> set[str]:
    """Workflow ids the visibility query finds, polled until they are `expect` (visibility lags)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {w.id async for w in client.list_workflows(query)}
        if found == expect or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


async def test_a_plan_awaiting_payment_is_found_by_its_state(live_stack: LiveStack) -> None:
    s = live_stack
    waiting = upfront_plan(s, company_name="Waiting Corp")
    other = upfront_plan(s, company_name="Other Corp", customer_email="other@other.test")
    for action in ("create_customer", "create_invoice", "send_invoice"):
        plan = await asyncio.to_thread(act, s, waiting["id"], action)
    assert plan["state"] == "awaiting_payment"
    await asyncio.to_thread(act, s, other["id"], "create_customer")

    wid = f"plan-{waiting['id']}"
    assert await _ids(s.client, 'PlanState = "awaiting_payment"', {wid}) == {wid}
    assert await _ids(s.client, 'PlanState = "customer_ready"', {f"plan-{other['id']}"}) == {f"plan-{other['id']}"}
    assert await _ids(s.client, f'PlanId = {waiting["id"]} AND PaymentSchedule = "upfront"', {wid}) == {wid}
    assert await _ids(s.client, 'CompanyName = "Waiting"', {wid}) == {wid}  # Text: matched by word

    attributes = (await s.client.get_workflow_handle(wid).describe()).typed_search_attributes
    assert attributes.get(PLAN_ID) == waiting["id"]
    assert attributes.get(PLAN_STATE) == "awaiting_payment"
    assert attributes.get(COMPANY_NAME) == "Waiting Corp"
    assert attributes.get(PAYMENT_SCHEDULE) == "upfront"
    assert attributes.get(STRIPE_CUSTOMER_ID) == plan["stripe_customer_id"]

    # The state moves on with the row: once paid and credited, the plan leaves the query.
    s.stripe().v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    await asyncio.to_thread(act, s, waiting["id"], "apply_credit")
    assert await _ids(s.client, 'PlanState = "awaiting_payment"', set()) == set()
    assert await _ids(s.client, 'PlanState = "credit_applied"', {wid}) == {wid}
    await save_history(s, waiting["id"], "upfront_search_attributes")


async def test_current_details_and_activity_summaries(live_stack: LiveStack) -> None:
    s = live_stack
    plan = upfront_plan(s)
    for action in ("create_customer", "create_invoice", "send_invoice"):
        plan = await asyncio.to_thread(act, s, plan["id"], action)
    handle = s.client.get_workflow_handle(f"plan-{plan['id']}")

    deadline = time.monotonic() + 10
    while True:
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        details = metadata.current_details
        if "to be paid" in details or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert details.startswith("State awaiting_payment. Waiting for ")
    assert f"invoice {plan['invoice_id']} to be paid: the invoice.paid webhook, or a poll every" in details
    assert details.endswith('or a click on "Apply Credit".')  # it arms the credit meanwhile

    summaries: list[Any] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and event.HasField("user_metadata"):
            summaries.append(json.loads(event.user_metadata.summary.data))
    assert summaries[:3] == ["Create Stripe Customer", "Create Invoice - Upfront", "Send invoice"]
