"""Issue 4, point 7: the workflow code still replays the recorded histories of real runs.

The histories under histories/ come from the end-to-end tests
(`RECORD_PLAN_HISTORIES=1 pytest tests/plans`; `upfront_search_attributes`, the first with the
"search-attributes" patch, from tests/operations/test_search_attributes.py;
`upfront_credit_on_hold_one_projection`, the credit-on-hold path with "hold-in-one-projection"). A change that would
break a running plan fails here; evolve the workflow with `workflow.patched(...)` instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.plan import PlanWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
EXPECTED = {"upfront_new_customer", "upfront_polling", "upfront_failed_then_retried", "monthly_all_at_once",
            "monthly_per_installment", "upfront_renewal_held_balance", "upfront_credit_on_hold",
            "upfront_uncollectible_paid_later", "monthly_share_on_hold", "monthly_future_start",
            "upfront_search_attributes", "upfront_credit_on_hold_one_projection"}


def test_every_recorded_scenario_is_present() -> None:
    assert {p.stem for p in HISTORIES} >= EXPECTED


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    assert len(history.events) > 10
    result = await Replayer(workflows=[PlanWorkflow]).replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
