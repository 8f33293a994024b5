"""One durable workflow per plan row (`plan-{row id}`): it owns the setup of an annual plan.

Buttons are updates whose validators use `domain.plan_rules.action_state`, the same rule the API
and the table show. Payments arrive as signals from the Stripe webhook, with polling of the
invoice as the fallback for a lost webhook; "next billing cycle" credits wait on a durable timer.
The row and its timeline are a projection written by the `plan_project` activity.

Deterministic: no I/O or clock here; activities are called by name so no Stripe or database
module is imported into the workflow sandbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.plan_rules import (
        CREDIT_ARMED,
        CREDIT_NONE,
        CREDIT_RELEASING,
        CREDIT_SCHEDULED,
        ActionRequest,
        ActionResult,
        AuditNote,
        InvoiceEvent,
        PlanFacts,
        Progress,
        Projection,
        StepInput,
        StepOutput,
        action_state,
        credit_release_time,
        is_done,
        plan_state,
    )

STRIPE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=12,
    non_retryable_error_types=["StripeRefused", "PlanProblem"],
)
# Steps whose activity is named `plan_<action>`; the credit actions are driven by `_advance`.
STRIPE_STEPS = ("create_customer", "create_invoice", "send_invoice", "schedule_subscription",
                "create_monthly_subscription", "sync_billing_service")
NOT_ALLOWED = "ActionNotAllowed"


@dataclass
class PlanStart:
    plan_id: int
    poll_seconds: int = 3600
    # Carried over by continue-as-new.
    facts: PlanFacts | None = None
    progress: Progress | None = None
    seq: int = 0


@workflow.defn
class PlanWorkflow:
    @workflow.init
    def __init__(self, start: PlanStart) -> None:
        self._plan_id = start.plan_id
        self._poll = timedelta(seconds=start.poll_seconds)
        self._facts = start.facts or PlanFacts(plan_id=start.plan_id)
        self._progress = start.progress or Progress()
        self._seq = start.seq
        self._events: list[InvoiceEvent] = []
        self._lock = asyncio.Lock()
        self._last_poll: datetime | None = None
        self._wake = False  # set after a click so the loop re-plans its next wake-up

    # ------------------------------------------------------------------ the process
    @workflow.run
    async def run(self, start: PlanStart) -> str:
        while True:
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
                workflow.continue_as_new(PlanStart(self._plan_id, int(self._poll.total_seconds()),
                                                   self._facts, self._progress, self._seq))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return plan_state(self._facts, self._progress, self._today())

    def _finished(self) -> bool:
        p = self._progress
        if self._facts.payment_schedule == "monthly" and self._facts.credit_release == "per_installment":
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
        return min(waits) if waits else None

    def _waiting_for_payments(self) -> bool:
        p = self._progress
        if self._facts.payment_schedule == "monthly":
            return p.credit == CREDIT_RELEASING and p.shares_released < self._facts.term_months
        return p.invoice_status == "open"

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
        return await self._act("create_customer", request)

    @create_customer.validator
    def _check_create_customer(self, request: ActionRequest) -> None:
        self._validate("create_customer", request)

    @workflow.update
    async def create_invoice(self, request: ActionRequest) -> ActionResult:
        return await self._act("create_invoice", request)

    @create_invoice.validator
    def _check_create_invoice(self, request: ActionRequest) -> None:
        self._validate("create_invoice", request)

    @workflow.update
    async def send_invoice(self, request: ActionRequest) -> ActionResult:
        return await self._act("send_invoice", request)

    @send_invoice.validator
    def _check_send_invoice(self, request: ActionRequest) -> None:
        self._validate("send_invoice", request)

    @workflow.update
    async def apply_credit(self, request: ActionRequest) -> ActionResult:
        return await self._act("apply_credit", request)

    @apply_credit.validator
    def _check_apply_credit(self, request: ActionRequest) -> None:
        self._validate("apply_credit", request)

    @workflow.update
    async def schedule_subscription(self, request: ActionRequest) -> ActionResult:
        return await self._act("schedule_subscription", request)

    @schedule_subscription.validator
    def _check_schedule_subscription(self, request: ActionRequest) -> None:
        self._validate("schedule_subscription", request)

    @workflow.update
    async def create_monthly_subscription(self, request: ActionRequest) -> ActionResult:
        return await self._act("create_monthly_subscription", request)

    @create_monthly_subscription.validator
    def _check_create_monthly_subscription(self, request: ActionRequest) -> None:
        self._validate("create_monthly_subscription", request)

    @workflow.update
    async def apply_credit_monthly(self, request: ActionRequest) -> ActionResult:
        return await self._act("apply_credit_monthly", request)

    @apply_credit_monthly.validator
    def _check_apply_credit_monthly(self, request: ActionRequest) -> None:
        self._validate("apply_credit_monthly", request)

    @workflow.update
    async def sync_billing_service(self, request: ActionRequest) -> ActionResult:
        return await self._act("sync_billing_service", request)

    @sync_billing_service.validator
    def _check_sync_billing_service(self, request: ActionRequest) -> None:
        self._validate("sync_billing_service", request)

    @workflow.update
    async def retry_step(self, request: ActionRequest) -> ActionResult:
        return await self._act("retry_step", request)

    @retry_step.validator
    def _check_retry_step(self, request: ActionRequest) -> None:
        self._validate("retry_step", request)

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
            if action == "retry_step":
                action = self._progress.failed_action or ""
                self._progress = replace(self._progress, failed_action=None, failed_message=None)
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
        if action in STRIPE_STEPS:
            return await self._call(action, f"plan_{action}", actor, params or {})
        if action == "apply_credit":
            if p.credit == CREDIT_NONE:
                self._progress = replace(p, credit=CREDIT_ARMED)
            await self._project(AuditNote(actor, action, "ok", self._key(action),
                                          result={"credit": self._progress.credit}))
            return True, "The credit is armed: it is applied once the invoice is paid."
        if action == "apply_credit_monthly":
            if self._facts.credit_release == "per_installment":
                self._progress = replace(p, credit=CREDIT_RELEASING)
                await self._project(AuditNote(actor, action, "ok", self._key(action),
                                              result={"credit": CREDIT_RELEASING}))
                return True, "The credit is released share by share as installments are paid."
            return await self._call(action, "plan_apply_credit_monthly", actor, params or {})
        raise ApplicationError(f"Unknown step {action!r}.", non_retryable=True)

    async def _call(self, action: str, activity: str, actor: str, params: dict[str, str],
                    share_index: int = 0) -> tuple[bool, str]:
        self._progress = replace(self._progress, running=action)
        try:
            out = await workflow.execute_activity(
                activity,
                StepInput(self._facts, replace(self._progress, running=None), workflow.now().isoformat(),
                          share_index),
                result_type=StepOutput,
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=STRIPE_RETRY,
            )
        except ActivityError as err:
            message = _failure_message(err)
            self._progress = replace(self._progress, running=None, failed_action=action,
                                     failed_message=message)
            await self._project(AuditNote(actor, action, "failed", self._key(action),
                                          input=dict(params), error=message))
            return False, message
        self._progress = replace(out.progress, running=None)
        await self._project(AuditNote(actor, action, "ok", self._key(action),
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
        status = {"invoice.paid": "paid", "invoice.voided": "void",
                  "invoice.marked_uncollectible": "uncollectible"}.get(event.event_type)
        if status is None:
            return
        if event.invoice_id == p.invoice_id:
            if p.invoice_status != "paid":  # a late "voided" never un-pays an invoice
                self._progress = replace(p, invoice_status=status)
        elif (self._facts.payment_schedule == "monthly" and status == "paid" and event.amount != 0
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
        monthly = self._facts.payment_schedule == "monthly"
        try:
            out = await workflow.execute_activity(
                "plan_list_paid_installments" if monthly else "plan_read_invoice",
                StepInput(self._facts, self._progress, now.isoformat()),
                result_type=StepOutput,
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=STRIPE_RETRY,
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
        if p.failed_action or p.running:
            return
        if p.credit == CREDIT_ARMED and p.invoice_status == "paid":
            if self._facts.credit_start == "next_billing_cycle":
                ok, _ = await self._call("apply_credit", "plan_billing_period_end", "workflow", {})
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
                await self._call("apply_credit", "plan_apply_credit", "workflow", {})
        p = self._progress
        if (p.credit == CREDIT_SCHEDULED and p.credit_scheduled_for
                and datetime.fromisoformat(p.credit_scheduled_for) <= workflow.now()):
            await self._call("apply_credit", "plan_apply_credit", "workflow", {})
        p = self._progress
        while (p.credit == CREDIT_RELEASING and not p.failed_action
               and p.shares_released < min(len(p.installments_paid), self._facts.term_months)):
            ok, _ = await self._call("apply_credit_monthly", "plan_release_credit_share", "workflow", {},
                                     share_index=p.shares_released)
            if not ok:
                return
            p = self._progress

    # ------------------------------------------------------------------ projection
    async def _project(self, note: AuditNote | None = None) -> None:
        self._seq += 1
        # A local activity: the row is written by this worker without a round trip through the
        # server, so a click returns sooner; it is recorded in history all the same.
        await workflow.execute_local_activity(
            "plan_project",
            Projection(self._facts, self._progress, workflow.now().isoformat(), self._seq, note),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
        )

    def _key(self, what: str) -> str:
        info = workflow.info()
        return f"{info.workflow_id}:{info.first_execution_run_id[:13]}:{self._seq + 1}:{what}"

    def _today(self):  # type: ignore[no-untyped-def]
        return workflow.now().date()


_EVENT_FOR_STATUS = {"paid": "invoice.paid", "void": "invoice.voided", "uncollectible": "invoice.marked_uncollectible"}


def _failure_message(err: ActivityError) -> str:
    cause = err.cause
    while cause is not None and not isinstance(cause, ApplicationError) and cause.cause is not None:
        cause = cause.cause
    return cause.message if cause is not None else str(err)


WORKFLOWS = [PlanWorkflow]
