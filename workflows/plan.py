"""One durable workflow per plan row (`plan-{row id}`): it owns the setup of an annual plan.

Buttons are updates whose validators use `domain.plan_rules.action_state`, the same rule the API
and the table show. Payments arrive as signals from the Stripe webhook, with polling of the
invoice as the fallback for a lost webhook; "next billing cycle" credits wait on a durable timer.
The row and its timeline are a projection written by the `plan_project` activity.

Deterministic: no I/O or clock here. Activities are called by reference
(`PlanActivities.create_invoice`), their modules passed through the sandbox unimported by it.

Changes for plans already running are behind `workflow.patched(...)`; the recorded histories in
tests/plans/histories must keep replaying.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.plan import PlanActivities
    from domain.plan_rules import (
        ACTION_LABELS,
        CREDIT_APPLIED,
        CREDIT_ARMED,
        CREDIT_NONE,
        CREDIT_RELEASING,
        CREDIT_SCHEDULED,
        Action,
        ActionRequest,
        ActionResult,
        AuditNote,
        InvoiceEvent,
        InvoiceStatus,
        PaymentSchedule,
        PlanFacts,
        Progress,
        Projection,
        StepInput,
        action_state,
        action_states,
        billing_sync_due,
        credit_release_time,
        is_done,
        plan_state,
    )

STRIPE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=12,
    non_retryable_error_types=["StripeRefused", "PlanProblem", "StripeReplayed500"],
)
# A row that cannot be projected must not hold the workflow's lock for ever: a few tries, then
# the workflow goes on (the activity puts the error on the row when it can).
PROJECTION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10),
                               maximum_attempts=4)
# The button steps that are one Stripe activity each; the credit buttons are driven by `_advance`.
STEP_ACTIVITIES: dict[str, Callable[..., Any]] = {
    Action.CREATE_CUSTOMER: PlanActivities.create_customer,
    Action.CREATE_INVOICE: PlanActivities.create_invoice,
    Action.SEND_INVOICE: PlanActivities.send_invoice,
    Action.SCHEDULE_SUBSCRIPTION: PlanActivities.schedule_subscription,
    Action.CREATE_MONTHLY_SUBSCRIPTION: PlanActivities.create_monthly_subscription,
    Action.SYNC_BILLING_SERVICE: PlanActivities.sync_billing_service,
}
STRIPE_STEPS = tuple(STEP_ACTIVITIES)
NOT_ALLOWED = "ActionNotAllowed"
# Events that take paid money back: the credit they paid for is re-checked before it is given.
MONEY_BACK_EVENTS = ("charge.refunded", "credit_note.created", "charge.dispute.created", "charge.dispute.closed")

# The Temporal UI's search attributes (domain.plan_rules.SEARCH_ATTRIBUTES names their types), so an
# engineer finds plans with e.g. `PlanState = "awaiting_payment"`.
PLAN_ID = SearchAttributeKey.for_int("PlanId")
PLAN_STATE = SearchAttributeKey.for_keyword("PlanState")
COMPANY_NAME = SearchAttributeKey.for_text("CompanyName")
PAYMENT_SCHEDULE = SearchAttributeKey.for_keyword("PaymentSchedule")
STRIPE_CUSTOMER_ID = SearchAttributeKey.for_keyword("StripeCustomerId")


@dataclass
class PlanStart:
    plan_id: int
    poll_seconds: int = 3600
    # Carried over by continue-as-new.
    facts: PlanFacts | None = None
    progress: Progress | None = None
    seq: int = 0
    # Signals received but not yet handled when the previous run continued as new.
    events: list[InvoiceEvent] = field(default_factory=list)
    # Off only where the namespace cannot have the search attributes registered: upserting an
    # unregistered one fails every workflow task of the plan.
    search_attributes: bool = True


@workflow.defn
class PlanWorkflow:
    @workflow.init
    def __init__(self, start: PlanStart) -> None:
        self._plan_id = start.plan_id
        self._poll = timedelta(seconds=start.poll_seconds)
        self._facts = start.facts or PlanFacts(plan_id=start.plan_id)
        self._progress = start.progress or Progress()
        self._seq = start.seq
        self._events: list[InvoiceEvent] = list(start.events or [])
        self._recheck = False  # money was taken back: re-check the payment before any credit
        self._lock = asyncio.Lock()
        self._last_poll: datetime | None = None
        self._wake = False  # set after a click so the loop re-plans its next wake-up
        self._search_attributes = start.search_attributes
        self._published: dict[str, object] = {}  # search attribute values last upserted

    # ------------------------------------------------------------------ the process
    @workflow.run
    async def run(self, start: PlanStart) -> str:
        while True:
            workflow.set_current_details(self._waiting_for())
            try:
                await workflow.wait_condition(
                    lambda: bool(self._events) or self._wake or self._finished(), timeout=self._next_wake())
            except TimeoutError:
                pass  # time to poll, or a scheduled credit is due
            self._wake = False
            async with self._lock:
                await self._take_events()
                await self._poll_if_due()
                await self._advance()
            if self._finished():
                break
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                # Events that arrived meanwhile go with the new run instead of being lost.
                workflow.continue_as_new(PlanStart(self._plan_id, int(self._poll.total_seconds()),
                                                   self._facts, self._progress, self._seq, list(self._events),
                                                   self._search_attributes))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return plan_state(self._facts, self._progress, self._today())

    @property
    def _monthly(self) -> bool:
        return self._facts.payment_schedule == PaymentSchedule.MONTHLY

    def _finished(self) -> bool:
        p = self._progress
        if self._facts.payment_schedule == PaymentSchedule.MONTHLY and self._facts.credit_release == "per_installment":
            return p.billing_synced and p.shares_released >= self._facts.term_months
        return is_done(self._facts, p)

    def _next_wake(self) -> timedelta | None:
        """Sleep until the next poll or the scheduled credit, whichever is first; else until woken."""
        waits: list[timedelta] = []
        if self._waiting_for_payments():
            waits.append(self._poll)
        if self._progress.credit == CREDIT_SCHEDULED and self._progress.credit_scheduled_for:
            due = datetime.fromisoformat(self._progress.credit_scheduled_for)
            waits.append(max(due - workflow.now(), timedelta(seconds=0)))
        if self._progress.billing_sync_waiting and not self._progress.failed_action:
            waits.append(max(self._billing_sync_at() - workflow.now(), timedelta(seconds=0)))
        return min(waits) if waits else None

    def _waiting_for_payments(self) -> bool:
        p = self._progress
        if self._facts.payment_schedule == PaymentSchedule.MONTHLY:
            return p.credit == CREDIT_RELEASING and p.shares_released < self._facts.term_months
        if p.invoice_status == InvoiceStatus.UNCOLLECTIBLE and p.credit != CREDIT_APPLIED:
            # An uncollectible invoice can still be paid; a lost webhook must not lose that.
            return workflow.patched("poll-uncollectible-invoices")
        return p.invoice_status == InvoiceStatus.OPEN

    # ------------------------------------------------------------------ signals and queries
    @workflow.signal
    def invoice_event(self, event: InvoiceEvent) -> None:
        self._events.append(event)

    @workflow.query
    def progress(self) -> Progress:
        return self._progress

    # ------------------------------------------------------------------ buttons
    @workflow.update
    async def create_customer(self, request: ActionRequest) -> ActionResult:
        return await self._act(Action.CREATE_CUSTOMER, request)

    @create_customer.validator
    def _check_create_customer(self, request: ActionRequest) -> None:
        self._validate(Action.CREATE_CUSTOMER, request)

    @workflow.update
    async def create_invoice(self, request: ActionRequest) -> ActionResult:
        return await self._act(Action.CREATE_INVOICE, request)

    @create_invoice.validator
    def _check_create_invoice(self, request: ActionRequest) -> None:
        self._validate(Action.CREATE_INVOICE, request)

    @workflow.update
    async def send_invoice(self, request: ActionRequest) -> ActionResult:
        return await self._act(Action.SEND_INVOICE, request)

    @send_invoice.validator
    def _check_send_invoice(self, request: ActionRequest) -> None:
        self._validate(Action.SEND_INVOICE, request)

    @workflow.update
    async def apply_credit(self, request: ActionRequest) -> ActionResult:
        return await self._act(Action.APPLY_CREDIT, request)

    @apply_credit.validator
    def _check_apply_credit(self, request: ActionRequest) -> None:
        self._validate(Action.APPLY_CREDIT, request)

    @workflow.update
    async def schedule_subscription(self, request: ActionRequest) -> ActionResult:
        return await self._act(Action.SCHEDULE_SUBSCRIPTION, request)

    @schedule_subscription.validator
    def _check_schedule_subscription(self, request: ActionRequest) -> None:
        self._validate(Action.SCHEDULE_SUBSCRIPTION, request)

    @workflow.update
    async def create_monthly_subscription(self, request: ActionRequest) -> ActionResult:
        return await self._act(Action.CREATE_MONTHLY_SUBSCRIPTION, request)

    @create_monthly_subscription.validator
    def _check_create_monthly_subscription(self, request: ActionRequest) -> None:
        self._validate(Action.CREATE_MONTHLY_SUBSCRIPTION, request)

    @workflow.update
    async def apply_credit_monthly(self, request: ActionRequest) -> ActionResult:
        return await self._act(Action.APPLY_CREDIT_MONTHLY, request)

    @apply_credit_monthly.validator
    def _check_apply_credit_monthly(self, request: ActionRequest) -> None:
        self._validate(Action.APPLY_CREDIT_MONTHLY, request)

    @workflow.update
    async def sync_billing_service(self, request: ActionRequest) -> ActionResult:
        return await self._act(Action.SYNC_BILLING_SERVICE, request)

    @sync_billing_service.validator
    def _check_sync_billing_service(self, request: ActionRequest) -> None:
        self._validate(Action.SYNC_BILLING_SERVICE, request)

    @workflow.update
    async def retry_step(self, request: ActionRequest) -> ActionResult:
        return await self._act(Action.RETRY_STEP, request)

    @retry_step.validator
    def _check_retry_step(self, request: ActionRequest) -> None:
        self._validate(Action.RETRY_STEP, request)

    def _validate(self, action: str, request: ActionRequest) -> None:
        # Validators must not change state: a rejected click leaves no trace in the history.
        allowed, reason = action_state(action, request.facts, self._progress, self._today())
        if not allowed:
            raise ApplicationError(reason, type=NOT_ALLOWED, non_retryable=True)

    async def _act(self, action: str, request: ActionRequest) -> ActionResult:
        async with self._lock:
            # Two clicks can both pass their validators before either runs: check again in turn.
            allowed, reason = action_state(action, request.facts, self._progress, self._today())
            if not allowed:
                raise ApplicationError(reason, type=NOT_ALLOWED, non_retryable=True)
            self._facts = request.facts
            if action == Action.RETRY_STEP:
                action = self._progress.failed_action or ""
                self._progress = replace(self._progress, failed_action=None, failed_message=None)
                if workflow.patched("fresh-keys-on-retry"):
                    # Every step looks before it creates, so new keys are safe, and they get past
                    # a 500 Stripe stored and replays for the old ones.
                    self._progress = replace(self._progress, credit_hold=None,
                                             key_generation=self._progress.key_generation + 1)
            ok, message = await self._step(action, request.actor, request.params)
            if ok:
                await self._advance()
            self._wake = True
            return ActionResult(ok=ok, action=action, message=message,
                                state=plan_state(self._facts, self._progress, self._today()))

    # ------------------------------------------------------------------ steps
    async def _step(self, action: str, actor: str, params: dict[str, str] | None = None) -> tuple[bool, str]:
        """Run one step; a refused Stripe call marks it failed on the row for "Retry step"."""
        p = self._progress
        if (action == Action.SYNC_BILLING_SERVICE and not p.subscription_id and p.subscription_schedule_id
                and workflow.patched("billing-sync-waits-for-subscription")):
            # A schedule's id is no subscription id: wait until the schedule has made the real one.
            self._progress = replace(p, billing_sync_waiting=True)
            due = billing_sync_due(self._facts)
            await self._project(AuditNote(actor, action, "ok", self._key(action),
                                          result={"waiting_until": due.isoformat()}))
            return True, f"The mapping is sent once the subscription exists (from {due.isoformat()})."
        if action in STEP_ACTIVITIES:
            return await self._call(action, STEP_ACTIVITIES[action], actor, params or {})
        if action == Action.APPLY_CREDIT:
            if p.credit == CREDIT_NONE:
                self._progress = replace(p, credit=CREDIT_ARMED)
            await self._project(AuditNote(actor, action, "ok", self._key(action),
                                          result={"credit": self._progress.credit}))
            return True, "The credit is armed: it is applied once the invoice is paid."
        if action == Action.APPLY_CREDIT_MONTHLY:
            if self._facts.credit_release == "per_installment":
                self._progress = replace(p, credit=CREDIT_RELEASING)
                await self._project(AuditNote(actor, action, "ok", self._key(action),
                                              result={"credit": CREDIT_RELEASING}))
                return True, "The credit is released share by share as installments are paid."
            return await self._call(action, PlanActivities.apply_credit_monthly, actor, params or {})
        raise ApplicationError(f"Unknown step {action!r}.", non_retryable=True)

    async def _call(self, action: str, activity: Callable[..., Any], actor: str, params: dict[str, str],
                    share_index: int = 0, entry: str | None = None) -> tuple[bool, str]:
        """Run one activity for `action` (the button "Retry step" re-runs if it fails); the
        timeline entry is named `entry` when the activity is only part of that button's work."""
        self._progress = replace(self._progress, running=action)
        summary = _summary(action, entry, activity)
        workflow.set_current_details(f"Running: {summary}. Stripe errors that may pass are retried with backoff.")
        try:
            out = await workflow.execute_activity_method(
                activity,
                StepInput(self._facts, replace(self._progress, running=None), workflow.now().isoformat(),
                          share_index, dict(params)),
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=STRIPE_RETRY,
                summary=summary,
            )
        except ActivityError as err:
            message = _failure_message(err)
            self._progress = replace(self._progress, running=None, failed_action=action,
                                     failed_message=message, partial=_failure_partial(err))
            await self._project(AuditNote(actor, entry or action, "failed", self._key(action),
                                          input=dict(params), error=message))
            return False, message
        self._progress = replace(out.progress, running=None)
        if entry == "check_payment" and self._progress.credit_hold and workflow.patched("hold-in-one-projection"):
            # The row must not show the hold without the failed step: in between, its buttons
            # would offer the next step instead of "Retry step".
            self._progress = replace(self._progress, failed_action=action, failed_message=self._progress.credit_hold)
        await self._project(AuditNote(actor, entry or action, "ok", self._key(action),
                                      input=dict(params), result=out.result))
        return True, out.result.get("message", "Done.")

    async def _take_events(self) -> None:
        events, self._events = self._events, []
        for event in events:
            self._apply_invoice_event(event)
        if events:
            await self._project(AuditNote("stripe", "invoice_event", "info", self._key("event"),
                                          result={e.event_id or e.invoice_id: e.event_type for e in events}))

    def _apply_invoice_event(self, event: InvoiceEvent) -> None:
        p = self._progress
        if event.event_type in MONEY_BACK_EVENTS:
            # Only a credit still to give can be held; the check itself runs in `_advance`.
            if p.credit in (CREDIT_SCHEDULED, CREDIT_RELEASING) or (p.credit == CREDIT_ARMED
                                                                    and p.invoice_status == InvoiceStatus.PAID):
                self._recheck = True
            return
        status = _STATUS_FOR_EVENT.get(event.event_type)
        if status is None:
            return
        if event.invoice_id == p.invoice_id:
            if p.invoice_status != InvoiceStatus.PAID:  # a late "voided" never un-pays an invoice
                self._progress = replace(p, invoice_status=status)
        elif (self._monthly and status == InvoiceStatus.PAID and event.amount != 0
              and event.invoice_id not in p.installments_paid
              and (event.customer_id is None or event.customer_id == p.customer_id)):
            self._progress = replace(p, installments_paid=[*p.installments_paid, event.invoice_id])

    async def _poll_if_due(self) -> None:
        """The lost-webhook fallback: re-read payment state every `poll_seconds` while waiting."""
        if not self._waiting_for_payments():
            return
        now = workflow.now()
        if self._last_poll is not None and now - self._last_poll < self._poll:
            return
        self._last_poll = now
        monthly = self._facts.payment_schedule == PaymentSchedule.MONTHLY
        try:
            out = await workflow.execute_activity_method(
                PlanActivities.list_paid_installments if monthly else PlanActivities.read_invoice,
                StepInput(self._facts, self._progress, now.isoformat()),
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=STRIPE_RETRY,
                summary=("Poll the paid installments" if monthly else "Poll the invoice's status")
                + " (the fallback for a lost webhook)",
            )
        except ActivityError as err:
            # Polling is only the fallback for a lost webhook: try again at the next interval.
            workflow.logger.warning("Polling payments of plan %s failed: %s", self._plan_id, _failure_message(err))
            return
        if monthly:
            for invoice_id in out.progress.installments_paid:
                self._apply_invoice_event(InvoiceEvent(invoice_id, "invoice.paid", "poll"))
        elif out.progress.invoice_status and out.progress.invoice_status != self._progress.invoice_status:
            self._apply_invoice_event(InvoiceEvent(self._progress.invoice_id or "",
                                                   _EVENT_FOR_STATUS.get(out.progress.invoice_status, ""),
                                                   "poll"))
            await self._project(AuditNote("workflow", "poll_invoice", "info", self._key("poll"),
                                          result={"invoice_status": out.progress.invoice_status}))

    async def _advance(self) -> None:
        """Do what the payment state now allows: armed credits, scheduled credits, shares."""
        p = self._progress
        if p.running:
            return
        settled = p.invoice_status in (InvoiceStatus.PAID, InvoiceStatus.VOID)
        if (p.held_balance and not p.held_balance_returned_txn and settled
                and workflow.patched("return-held-balance")):
            # The invoice no longer needs the old credit kept away from it: give it back.
            await self._call(Action.SEND_INVOICE, PlanActivities.return_held_balance, "workflow", {},
                             entry="return_held_balance")
            p = self._progress
        if p.failed_action:
            return
        if self._recheck:
            self._recheck = False
            if not await self._payment_kept(p.shares_released if self._monthly else 0):
                return
            p = self._progress
        if p.credit == CREDIT_ARMED and p.invoice_status == InvoiceStatus.PAID:
            if not await self._payment_kept():
                return
            if self._facts.credit_start == "next_billing_cycle":
                ok, _ = await self._call(Action.APPLY_CREDIT, PlanActivities.billing_period_end, "workflow", {})
                if not ok:
                    return
                period_end = self._progress.credit_scheduled_for
                when = credit_release_time(
                    datetime.fromisoformat(period_end) if period_end else None,
                    self._facts.start, workflow.now())
                self._progress = replace(self._progress, credit=CREDIT_SCHEDULED,
                                         credit_scheduled_for=when.isoformat())
                await self._project(AuditNote("workflow", "schedule_credit", "info", self._key("schedule"),
                                              result={"credit_scheduled_for": when.isoformat()}))
            else:
                await self._call(Action.APPLY_CREDIT, PlanActivities.apply_credit, "workflow", {})
        p = self._progress
        if (p.credit == CREDIT_SCHEDULED and p.credit_scheduled_for and not p.failed_action
                and datetime.fromisoformat(p.credit_scheduled_for) <= workflow.now()):
            # A refund, credit note or dispute may have come since the payment: check again.
            if not await self._payment_kept():
                return
            await self._call(Action.APPLY_CREDIT, PlanActivities.apply_credit, "workflow", {})
        p = self._progress
        if p.billing_sync_waiting and not p.failed_action and self._billing_sync_at() <= workflow.now():
            ok, _ = await self._call(Action.SYNC_BILLING_SERVICE, PlanActivities.sync_billing_service, "workflow", {})
            if ok:
                self._progress = replace(self._progress, billing_sync_waiting=False)
            p = self._progress
        while (p.credit == CREDIT_RELEASING and not p.failed_action
               and p.shares_released < min(len(p.installments_paid), self._facts.term_months)):
            if not await self._payment_kept(p.shares_released):
                return
            ok, _ = await self._call(Action.APPLY_CREDIT_MONTHLY, PlanActivities.release_credit_share, "workflow", {},
                                     share_index=p.shares_released)
            if not ok:
                return
            p = self._progress

    def _billing_sync_at(self) -> datetime:
        # An hour into the schedule's start day: Stripe has made the subscription by then.
        return datetime.combine(billing_sync_due(self._facts), time(1, 0), tzinfo=UTC)

    async def _payment_kept(self, share_index: int = 0) -> bool:
        """Right before a credit (or a share of it) is given: was its invoice paid in money for its
        whole total, with nothing refunded, credited or disputed since? If not, the credit is
        held, the row is flagged, and "Retry step" checks again."""
        if not workflow.patched("verify-payment-before-credit"):
            return True  # plans that reached this point before the check existed
        p = self._progress
        if self._facts.payment_schedule == PaymentSchedule.MONTHLY:
            if share_index >= len(p.installments_paid):
                return True  # nothing paid yet to check: no share is due either
            action = Action.APPLY_CREDIT_MONTHLY
        else:
            if not p.invoice_id:
                return True
            action = Action.APPLY_CREDIT
        ok, _ = await self._call(action, PlanActivities.verify_payment, "workflow", {}, share_index=share_index,
                                 entry="check_payment")
        if not ok:
            return False
        hold = self._progress.credit_hold
        if hold:
            self._progress = replace(self._progress, failed_action=action, failed_message=hold)
            await self._project(AuditNote("workflow", "credit_on_hold", "failed", self._key("hold"), error=hold))
            return False
        return True

    # ------------------------------------------------------------------ projection
    async def _project(self, note: AuditNote | None = None) -> None:
        self._publish()
        self._seq += 1
        # A local activity: the row is written by this worker without a round trip through the
        # server, so a click returns sooner; it is recorded in history all the same.
        try:
            await workflow.execute_local_activity_method(
                PlanActivities.project,
                Projection(self._facts, self._progress, workflow.now().isoformat(), self._seq, note),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PROJECTION_RETRY,
                summary="Write the row and its timeline" + (f" ({note.action}: {note.outcome})" if note else ""),
            )
        except ActivityError as err:
            # The row lags until the next projection; the workflow (and every click) goes on.
            workflow.logger.warning("Plan %s could not be projected: %s", self._plan_id, _failure_message(err))

    def _publish(self) -> None:
        """Upsert the search attributes whose values changed since the last upsert (every
        projection calls this, so they follow the row's state)."""
        if not self._search_attributes or not workflow.patched("search-attributes"):
            return  # plans recorded before the attributes existed replay without the upsert
        values: list[tuple[SearchAttributeKey[Any], Any]] = [
            (PLAN_ID, self._plan_id),
            (PLAN_STATE, plan_state(self._facts, self._progress, self._today())),
            (COMPANY_NAME, self._facts.company_name or None),
            (PAYMENT_SCHEDULE, str(self._facts.payment_schedule) or None),
            (STRIPE_CUSTOMER_ID, self._progress.customer_id),
        ]
        updates: list[SearchAttributeUpdate[Any]] = []
        for key, value in values:
            if key.name in self._published and self._published[key.name] == value:
                continue
            if value is not None:
                updates.append(key.value_set(value))
            elif key.name in self._published:
                updates.append(key.value_unset())
            self._published[key.name] = value
        if updates:
            workflow.upsert_search_attributes(updates)

    def _waiting_for(self) -> str:
        """The workflow's current details in the Temporal UI: what it waits for now."""
        p = self._progress
        state = plan_state(self._facts, p, self._today())
        if p.failed_action:
            label = ACTION_LABELS.get(p.failed_action, p.failed_action)
            return (f"State {state}. The step \"{label}\" failed: {p.failed_message or 'no message'}. "
                    f"Waiting for \"Retry step\" after the data is fixed.")
        waits: list[str] = []
        if self._waiting_for_payments():
            what = ("the paid installments" if self._monthly
                    else f"invoice {p.invoice_id or '?'} to be paid")
            waits.append(f"{what}: the invoice.paid webhook, or a poll every {_duration(self._poll)}")
        if p.credit == CREDIT_SCHEDULED and p.credit_scheduled_for:
            waits.append(f"{p.credit_scheduled_for} to apply the credit (next billing cycle)")
        if p.billing_sync_waiting:
            waits.append(f"{self._billing_sync_at().isoformat()} to send the billing-service mapping")
        if p.credit == CREDIT_ARMED and p.invoice_status != InvoiceStatus.PAID:
            waits.append("the payment to apply the armed credit")
        allowed = [ACTION_LABELS.get(a, a) for a, (ok, _) in
                   action_states(self._facts, p, self._today()).items() if ok and a != Action.RETRY_STEP]
        if allowed:
            waits.append("a click on " + ", ".join(f'"{label}"' for label in allowed))
        if not waits:
            return f"State {state}. Nothing to wait for."
        return f"State {state}. Waiting for " + "; or ".join(waits) + "."

    def _key(self, what: str) -> str:
        info = workflow.info()
        # The timeline's dedupe key. A Temporal reset keeps the first run id and restarts the
        # sequence, so the key names this run: the new run's entries are not taken for repeats.
        run = info.run_id if workflow.patched("timeline-keys-per-run") else info.first_execution_run_id
        return f"{info.workflow_id}:{run[:13]}:{self._seq + 1}:{what}"

    def _today(self) -> date:
        return workflow.now().date()


_EVENT_FOR_STATUS: dict[str, str] = {InvoiceStatus.PAID: "invoice.paid", InvoiceStatus.VOID: "invoice.voided",
                                     InvoiceStatus.UNCOLLECTIBLE: "invoice.marked_uncollectible"}
_STATUS_FOR_EVENT: dict[str, InvoiceStatus] = {
    event: InvoiceStatus(status) for status, event in _EVENT_FOR_STATUS.items()}


def _summary(action: str, entry: str | None, activity: Callable[..., Any]) -> str:
    """An activity's summary in the Temporal UI: the button it belongs to and what it does."""
    label = ACTION_LABELS.get(action, action)
    name = getattr(activity, "__name__", str(activity))
    return f"{label}: {entry or name}" if (entry or name) != action else label


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _failure_partial(err: ActivityError) -> dict[str, str]:
    """Ids a step made before it failed (an ApplicationError's first detail), kept on the row."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
        return {str(k): str(v) for k, v in cause.details[0].items()}
    return {}


def _failure_message(err: ActivityError) -> str:
    """The innermost failure's sentence (the activity's ApplicationError, usually)."""
    cause: BaseException | None = err.cause
    while isinstance(cause, FailureError) and not isinstance(cause, ApplicationError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, FailureError):
        return cause.message
    return str(cause or err)


# Each button, by reference, to the update that runs it.
UPDATES: dict[Action, Callable[..., Any]] = {
    Action.CREATE_CUSTOMER: PlanWorkflow.create_customer,
    Action.CREATE_INVOICE: PlanWorkflow.create_invoice,
    Action.SEND_INVOICE: PlanWorkflow.send_invoice,
    Action.APPLY_CREDIT: PlanWorkflow.apply_credit,
    Action.SCHEDULE_SUBSCRIPTION: PlanWorkflow.schedule_subscription,
    Action.CREATE_MONTHLY_SUBSCRIPTION: PlanWorkflow.create_monthly_subscription,
    Action.APPLY_CREDIT_MONTHLY: PlanWorkflow.apply_credit_monthly,
    Action.SYNC_BILLING_SERVICE: PlanWorkflow.sync_billing_service,
    Action.RETRY_STEP: PlanWorkflow.retry_step,
}

WORKFLOWS = [PlanWorkflow]
