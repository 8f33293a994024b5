"""Catalog workflows: the scheduled catalog check, startup plans and free trials.

- `CatalogCheckWorkflow` runs `revops catalog check` on a Temporal Schedule; its result is the
  list of problems.
- `StartupPlanWorkflow` (`startup-plan-<subscription id>`): one durable timer per subscription
  holding a price with `valid_days`. At the shortest expiry the subscription moves to each
  startup price's `move_to_price_id`, else the config's default price — or, when a price lacks
  `plan=startup`, ends so the customer is on the free plans (runbook). Operators can move the date
  or cancel the timer.
- `FreeTrialWorkflow` (`free-trial-<org id>`): "free trial until" per organisation. At that date the
  organisation goes back to the free plan unless its customer began a subscription meanwhile; the
  billing service is told. The date can be changed, or the trial cancelled.

Timers are Temporal's: they survive worker restarts. No I/O here: Stripe and the billing service
are reached only through activities.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.catalog import (
        CatalogActivities,
        CatalogCheckResult,
        FreeTrialEnd,
        FreeTrialOutcome,
        StartupOutcome,
    )
    from domain.catalog_check import StartupPlan

CHECK_SCHEDULE_ID = "catalog-check"
CHECK_WORKFLOW_ID = "catalog-check"
STRIPE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                           maximum_interval=timedelta(minutes=5), maximum_attempts=20)


def startup_workflow_id(subscription_id: str) -> str:
    return f"startup-plan-{subscription_id}"


def free_trial_workflow_id(org_id: str) -> str:
    return f"free-trial-{org_id}"


def _at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def _parse_future(text: str, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ApplicationError(f"The {what} {text!r} is not an ISO date or date-time (2027-01-31).") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= workflow.now():
        raise ApplicationError(f"The {what} {text} is not in the future.")
    return when


@workflow.defn(name="CatalogCheck")
class CatalogCheckWorkflow:
    @workflow.run
    async def run(self) -> CatalogCheckResult:
        return await workflow.execute_activity_method(
            CatalogActivities.check, start_to_close_timeout=timedelta(minutes=5), retry_policy=STRIPE_RETRY)


# ---- startup plans ---------------------------------------------------------------------------


@dataclass
class StartupPlanStatus:
    subscription: str
    state: str  # reading | waiting | moved | free_plans | already_done | ended | cancelled | not_startup
    expires_at: str | None  # ISO, UTC
    outcome: str | None  # move | free_plans: what will happen (or happened)
    targets: list[str]  # "price_a → price_b"
    reason: str
    detail: str = ""


@workflow.defn(name="StartupPlan")
class StartupPlanWorkflow:
    def __init__(self) -> None:
        self._status = StartupPlanStatus("", "reading", None, None, [], "")
        self._due: datetime | None = None
        self._cancelled = False
        self._changed = False

    @workflow.run
    async def run(self, subscription_id: str) -> StartupPlanStatus:
        self._status.subscription = subscription_id
        plan: StartupPlan | None = await workflow.execute_activity_method(
            CatalogActivities.startup_plan_read, subscription_id, start_to_close_timeout=timedelta(minutes=2),
            retry_policy=STRIPE_RETRY)
        if plan is None:
            self._status.state = "not_startup"
            self._status.reason = f"Subscription {subscription_id} holds no price with valid_days."
            return self._status
        self._due = _at(plan.expires_at)
        self._status.state = "waiting"
        self._status.outcome = plan.outcome
        self._status.targets = [f"{m.from_price} → {m.to_price}" for m in plan.moves]
        self._status.reason = plan.reason
        while True:
            self._status.expires_at = self._due.isoformat()
            self._changed = False
            wait = max(self._due - workflow.now(), timedelta(0))
            try:
                await workflow.wait_condition(lambda: self._cancelled or self._changed, timeout=wait)
            except TimeoutError:
                break
            if self._cancelled:
                self._status.state = "cancelled"
                await workflow.wait_condition(workflow.all_handlers_finished)
                return self._status
        outcome: StartupOutcome = await workflow.execute_activity_method(
            CatalogActivities.startup_plan_expire, plan, start_to_close_timeout=timedelta(minutes=2),
            retry_policy=STRIPE_RETRY)
        self._status.state = outcome.outcome
        self._status.detail = outcome.detail
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status

    @workflow.query
    def status(self) -> StartupPlanStatus:
        return self._status

    @workflow.update
    def move_date(self, when: str) -> StartupPlanStatus:
        self._due = _parse_future(when, "new expiry")
        self._status.expires_at = self._due.isoformat()
        self._changed = True
        return self._status

    @move_date.validator
    def _check_move_date(self, when: str) -> None:
        if self._status.state != "waiting":
            raise ApplicationError(f"The startup plan of {self._status.subscription} is {self._status.state}, "
                                   "not waiting; its date cannot move.")
        _parse_future(when, "new expiry")

    @workflow.update
    def cancel(self) -> StartupPlanStatus:
        self._cancelled = True
        self._status.state = "cancelled"
        return self._status

    @cancel.validator
    def _check_cancel(self) -> None:
        if self._status.state != "waiting":
            raise ApplicationError(f"The startup plan of {self._status.subscription} is {self._status.state}; "
                                   "only a waiting one can be cancelled.")


# ---- free trials -----------------------------------------------------------------------------


@dataclass
class FreeTrialInput:
    org: str
    until: str  # ISO date or date-time
    customer: str | None = None
    # When the trial was granted (unix seconds, the caller's clock, which is Stripe's): a
    # subscription created since then counts as "subscribed meanwhile".
    granted_at: int | None = None


@dataclass
class FreeTrialStatus:
    org: str
    state: str  # running | subscribed | back_to_free | cancelled
    until: str
    customer: str | None
    subscription: str | None = None
    delivered: str = ""


@workflow.defn(name="FreeTrial")
class FreeTrialWorkflow:
    def __init__(self) -> None:
        self._status = FreeTrialStatus("", "running", "", None)
        self._until: datetime | None = None
        self._cancelled = False
        self._changed = False

    @workflow.run
    async def run(self, trial: FreeTrialInput) -> FreeTrialStatus:
        granted_at = trial.granted_at if trial.granted_at is not None else int(workflow.now().timestamp())
        self._status = FreeTrialStatus(trial.org, "running", trial.until, trial.customer)
        until = datetime.fromisoformat(trial.until)
        self._until = until if until.tzinfo else until.replace(tzinfo=UTC)
        while True:
            self._status.until = self._until.isoformat()
            self._changed = False
            try:
                await workflow.wait_condition(lambda: self._cancelled or self._changed,
                                              timeout=max(self._until - workflow.now(), timedelta(0)))
            except TimeoutError:
                break
            if self._cancelled:
                self._status.state = "cancelled"
                await workflow.wait_condition(workflow.all_handlers_finished)
                return self._status
        outcome: FreeTrialOutcome = await workflow.execute_activity_method(
            CatalogActivities.free_trial_end,
            FreeTrialEnd(trial.org, self._status.customer, granted_at),
            start_to_close_timeout=timedelta(minutes=2), retry_policy=STRIPE_RETRY)
        self._status.state = outcome.outcome
        self._status.subscription = outcome.subscription
        self._status.delivered = outcome.delivered
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status

    @workflow.query
    def status(self) -> FreeTrialStatus:
        return self._status

    @workflow.update
    def set_until(self, when: str) -> FreeTrialStatus:
        self._until = _parse_future(when, "trial end")
        self._status.until = self._until.isoformat()
        self._changed = True
        return self._status

    @set_until.validator
    def _check_until(self, when: str) -> None:
        if self._status.state != "running":
            raise ApplicationError(f"The free trial of {self._status.org} is {self._status.state}; its date is final.")
        _parse_future(when, "trial end")

    @workflow.update
    def cancel(self) -> FreeTrialStatus:
        self._cancelled = True
        self._status.state = "cancelled"
        return self._status

    @cancel.validator
    def _check_cancel(self) -> None:
        if self._status.state != "running":
            raise ApplicationError(f"The free trial of {self._status.org} is {self._status.state}; "
                                   "only a running one can be cancelled.")


WORKFLOWS: list[type] = [CatalogCheckWorkflow, StartupPlanWorkflow, FreeTrialWorkflow]


async def ensure_catalog_check_schedule(client: object, task_queue: str, *,
                                        every: timedelta = timedelta(hours=6)) -> str:
    """Create the `catalog-check` schedule unless it exists (idempotent)."""
    from temporal_client import ensure_interval_schedule

    return await ensure_interval_schedule(client, CHECK_SCHEDULE_ID, CatalogCheckWorkflow.run,
                                          workflow_id=CHECK_WORKFLOW_ID, task_queue=task_queue, every=every)


async def ensure_startup_timer(client: object, task_queue: str, subscription_id: str) -> Any:
    """Start the subscription's startup-plan timer unless it runs already (for the revenue sync and
    the Stripe webhook, which find subscriptions). Returns the workflow handle."""
    from temporalio.client import Client
    from temporalio.common import WorkflowIDConflictPolicy

    assert isinstance(client, Client)
    return await client.start_workflow(StartupPlanWorkflow.run, subscription_id,
                                       id=startup_workflow_id(subscription_id), task_queue=task_queue,
                                       id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
