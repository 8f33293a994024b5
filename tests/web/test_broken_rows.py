"""Issue 11 defect 9 (table part): a row whose projection cannot be read — junk in
`workflow_view`, a date out of range, a state the code does not know — shows its error on itself
and never breaks the table page, the row page or the API list for everyone else."""

from __future__ import annotations

import html as html_text
import re
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from flask.testing import FlaskClient

from settings import Settings
from store.db import unit_of_work
from store.models import Plan
from tests.fixtures.app import auth

SignedIn = Callable[[str], tuple[FlaskClient, str]]

BROKEN: dict[str, dict[str, Any]] = {
    "view_not_an_object": {"workflow_view": ["not", "a", "dict"], "state": "awaiting_payment"},
    "progress_not_an_object": {"workflow_view": {"progress": "junk", "error": "junk", "checks": 5},
                               "state": "awaiting_payment"},
    "failed_action_unknown": {"workflow_view": {"progress": {"failed_action": "make_coffee",
                                                             "failed_message": "?"}},
                              "state": "step_failed"},
    "due_date_unreadable": {"workflow_view": {"progress": {"customer_id": "cus_B", "invoice_id": "in_B",
                                                           "invoice_status": "open",
                                                           "invoice_due_date": "soon"}},
                            "state": "awaiting_payment"},
    "start_out_of_range": {"start_date": date(9999, 12, 25), "state": "customer_ready",
                           "workflow_view": {"progress": {"customer_id": "cus_B"}}},
    "state_unknown": {"state": "teleported"},
}


def _plant(settings: Settings, plan_id: int, **columns: Any) -> None:
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        for name, value in columns.items():
            setattr(plan, name, value)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_row_shows_its_error_and_the_pages_still_answer(
    case: str, signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings, users: dict[str, str]
) -> None:
    healthy = add_plan(pandadoc_id="pd-healthy", company_name="Healthy Co")
    broken = add_plan(pandadoc_id="pd-broken", company_name="Broken Co")
    _plant(settings, broken, **BROKEN[case])
    client, token = signed_in("operator")

    table = client.get("/")
    assert table.status_code == 200
    html = table.get_data(as_text=True)
    good_row = re.search(rf'<tr id="plan-{healthy}".*?</tr>', html, re.S)
    bad_row = re.search(rf'<tr id="plan-{broken}".*?</tr>', html, re.S)
    assert good_row and bad_row
    assert 'class="btn primary" data-action="create_customer"' in good_row.group(0)  # others still work
    error = re.search(r'<div class="row-error">([^<]+)</div>', bad_row.group(0))
    assert error and f"Row {broken}" in error.group(1), bad_row.group(0)
    assert f'action="/plans/{broken}/actions/' not in bad_row.group(0)  # no button may run on it

    listed = client.get("/api/plans", headers=auth(users["viewer"]))
    assert listed.status_code == 200
    by_id = {p["id"]: p for p in listed.get_json()["plans"]}
    assert "projection_error" not in by_id[healthy] and by_id[healthy]["actions"]["create_customer"]["allowed"]
    problem = by_id[broken]["projection_error"]
    assert problem.startswith(f"Row {broken} ")
    assert all(not a["allowed"] and a["reason"] == problem for a in by_id[broken]["actions"].values())
    assert client.get(f"/api/plans/{broken}", headers=auth(users["viewer"])).status_code == 200

    page = client.get(f"/plans/{broken}")
    assert page.status_code == 200 and problem in html_text.unescape(page.get_data(as_text=True))
    assert client.get(f"/plans/{broken}/live?version=0").status_code == 200
    assert client.get(f"/table/rows?rows={broken}:0").status_code == 200

    # A click on it is refused with the same sentence, not a 500.
    click = client.post(f"/api/plans/{broken}/actions/create_customer", headers=auth(users["operator"]))
    assert click.status_code == 409 and click.get_json()["error"] == problem


def test_a_projection_the_workflow_could_not_write_is_shown_on_the_row(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings, users: dict[str, str]
) -> None:
    plan_id = add_plan()
    recorded = ("The workflow's state could not be shown on this row at 2030-01-01T00:00:00+00:00: "
                "OverflowError: date value out of range")
    _plant(settings, plan_id, workflow_view={"progress": {}, "projection_error": recorded})
    client, _ = signed_in("operator")
    row = re.search(rf'<tr id="plan-{plan_id}".*?</tr>', client.get("/").get_data(as_text=True), re.S)
    assert row and recorded in html_text.unescape(row.group(0))
    body = client.get(f"/api/plans/{plan_id}", headers=auth(users["viewer"])).get_json()
    assert body["projection_error"] == recorded
    # The row may be behind the workflow, whose validators still decide: the buttons stay.
    assert body["actions"]["create_customer"]["allowed"]
