"""Recorded histories of the catalog workflows replay on today's code: a change that would break a
running timer (startup plan waiting a year, a free trial) fails here first. Recorded by running
the workflows against the sandbox; re-record only with `workflow.patched` for the old path."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.catalog import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_there() -> None:
    assert {p.stem for p in HISTORIES} >= {"startup_plan_moved", "startup_plan_cancelled", "free_trial_subscribed"}


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
