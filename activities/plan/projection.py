"""The row and its timeline: what the plan's workflow has done, as the table and the API show it."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from temporalio import activity

from activities.plan.billing_service import billing_mapping
from activities.plan.common import PlanActivityBase
from activities.stripe_api import dashboard_url
from domain.money import display
from domain.plan_rules import PlanFacts, Progress, Projection, action_states, plan_state

log = logging.getLogger(__name__)


def projection_order(now: str, seq: int) -> tuple[datetime, int]:
    """Projections are ordered by workflow time, then by sequence number. A Temporal reset (or a
    workflow resumed from the row) restarts the sequence, but its workflow time is later than
    anything the old run wrote; a late retry of an old projection carries its old time."""
    return datetime.fromisoformat(now), seq


def held_balance_view(facts: PlanFacts, p: Progress) -> dict[str, str] | None:
    if not p.held_balance:
        return None
    returned = p.held_balance_returned_txn
    return {"amount": display(p.held_balance, facts.currency), "transaction": p.held_balance_txn or "",
            "returns": (f"given back ({returned})" if returned else
                        f"given back once invoice {p.invoice_id} is paid or voided")}


class ProjectionActivities(PlanActivityBase):
    @activity.defn(name="plan_project")
    def project(self, projection: Projection) -> None:
        try:
            self._project(projection)
        except Exception as exc:  # noqa: BLE001 - a row that cannot be projected says why instead
            if not self._record_failure(projection, exc):
                raise  # the database itself is unreachable: Temporal retries (a few times)

    def _project(self, projection: Projection) -> None:
        from store.db import unit_of_work
        from store.models import Plan
        from store.plans import record
        from temporal_client import workflow_url

        facts, p = projection.facts, projection.progress
        now = datetime.fromisoformat(projection.now)
        with unit_of_work(self.settings.database_url) as session:
            plan = session.get(Plan, facts.plan_id, with_for_update=True)
            if plan is None:
                return
            view = dict(plan.workflow_view or {})
            stored = int(view.get("seq", 0))
            stored_at = view.get("projected_at")
            newer = (projection_order(projection.now, projection.seq) > projection_order(str(stored_at), stored)
                     if isinstance(stored_at, str) else stored < projection.seq)
            if newer:
                plan.stripe_customer_id = p.customer_id
                plan.invoice_id = p.invoice_id
                plan.subscription_schedule_id = p.schedule_id or p.subscription_schedule_id
                plan.monthly_price_id = p.monthly_price_id
                plan.subscription_id = p.subscription_id
                plan.credit_applied_at = datetime.fromisoformat(p.credit_applied_at) if p.credit_applied_at else None
                plan.credit_scheduled_for = (datetime.fromisoformat(p.credit_scheduled_for)
                                             if p.credit_scheduled_for and p.credit != "none" else None)
                plan.state = plan_state(facts, p, now.date())
                plan.workflow_view = {
                    "seq": projection.seq,
                    "progress": asdict(p),
                    "actions": {a: {"allowed": ok, "reason": why}
                                for a, (ok, why) in action_states(facts, p, now.date()).items()},
                    "checks": p.checks,
                    "error": ({"action": p.failed_action, "message": p.failed_message}
                              if p.failed_action else None),
                    "held_balance": held_balance_view(facts, p),
                    "credit_hold": p.credit_hold,
                    "partial": p.partial or None,
                    "billing_mapping": billing_mapping(facts, p) if p.billing_synced else None,
                    "temporal_url": workflow_url(self.settings, f"plan-{facts.plan_id}"),
                    "links": {obj: dashboard_url(self.settings, obj) for obj in _stripe_ids(p)},
                    "projected_at": projection.now,
                }
            note = projection.audit
            if note is not None:
                result: dict[str, Any] = dict(note.result)
                links = {v: dashboard_url(self.settings, v) for v in note.result.values()
                         if isinstance(v, str) and v.split("_", 1)[0] in {"cus", "in", "sub", "price", "cbtxn"}}
                if links:
                    result["links"] = links
                result["workflow"] = workflow_url(self.settings, f"plan-{facts.plan_id}")
                record(session, facts.plan_id, actor=note.actor, action=note.action, outcome=note.outcome,
                       input=note.input, result=result, error=note.error, dedupe_key=note.key)

    def _record_failure(self, projection: Projection, exc: Exception) -> bool:
        """Put the projection's failure on the row (the rest of the view as it was), so the row
        shows its error and the table keeps working. False when even that cannot be written."""
        from store.db import unit_of_work
        from store.models import Plan

        log.exception("Plan %s could not be projected", projection.facts.plan_id)
        try:
            with unit_of_work(self.settings.database_url) as session:
                plan = session.get(Plan, projection.facts.plan_id)
                if plan is None:
                    return True
                view = dict(plan.workflow_view or {})
                view["projection_error"] = (f"The workflow's state could not be shown on this row at "
                                            f"{projection.now}: {type(exc).__name__}: {exc}")
                plan.workflow_view = view
        except Exception:  # noqa: BLE001
            log.exception("Plan %s: the projection failure could not be recorded either", projection.facts.plan_id)
            return False
        return True


def _stripe_ids(p: Progress) -> list[str]:
    ids = [p.customer_id, p.invoice_id, p.schedule_id, p.monthly_price_id, p.subscription_id,
           p.subscription_schedule_id, p.first_invoice_id, p.held_balance_txn, p.held_balance_returned_txn]
    return [i for i in ids if i]
