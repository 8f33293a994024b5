"""Shared helpers of the plan end-to-end tests."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fixtures.stack import LiveStack, wait_until


def sandbox_today(stack: LiveStack) -> date:
    return datetime.fromtimestamp(stack.sandbox.now(), UTC).date()


def upfront_plan(stack: LiveStack, **kw: Any) -> dict[str, Any]:
    start = sandbox_today(stack) + timedelta(days=5)
    body = {
        "company_name": "Acme Inc", "customer_email": f"ap+{start.isoformat()}@acme.test",
        "credit_amount": "120000.00", "discount": "20", "price": "96000.00",
        "start_date": start.isoformat(), "term_months": 12, "posthog_org_id": "org_acme",
        "products": ["product_analytics", "session_replay"],
    }
    body.update(kw)
    response = stack.api("POST", "/api/plans", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def act(stack: LiveStack, plan_id: int, action: str, expect: int = 200, **kw: Any) -> dict[str, Any]:
    response = stack.api("POST", f"/api/plans/{plan_id}/actions/{action}", **kw)
    assert response.status_code == expect, (action, response.status_code, response.text)
    return dict(response.json())


def get_plan(stack: LiveStack, plan_id: int) -> dict[str, Any]:
    response = stack.api("GET", f"/api/plans/{plan_id}", role="viewer")
    assert response.status_code == 200
    return dict(response.json())


def wait_for_plan(stack: LiveStack, plan_id: int, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    return dict(wait_until(lambda: (lambda p: p if predicate(p) else None)(get_plan(stack, plan_id)), timeout))


def timeline(stack: LiveStack, plan_id: int) -> list[dict[str, Any]]:
    response = stack.api("GET", f"/api/plans/{plan_id}/timeline", role="viewer")
    assert response.status_code == 200
    return list(response.json()["timeline"])


def balance_transactions(stack: LiveStack, customer_id: str) -> list[Any]:
    return list(stack.stripe().v1.customers.balance_transactions.list(customer_id, {"limit": 100}).data)


def customers_for(stack: LiveStack, email: str) -> list[Any]:
    return list(stack.stripe().v1.customers.list({"email": email, "limit": 100}).data)


HISTORIES = Path(__file__).parent / "histories"


async def save_history(stack: LiveStack, plan_id: int, name: str) -> None:
    """With RECORD_PLAN_HISTORIES=1, keep this run's workflow history for the replay test."""
    if not os.environ.get("RECORD_PLAN_HISTORIES"):
        return
    history = await stack.client.get_workflow_handle(f"plan-{plan_id}").fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json())
