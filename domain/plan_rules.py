"""The plan state machine: which button may be pressed now, and why not (SPEC §5–§7).

One rule for three callers: the workflow's update validators reject a click with `reason`, the
JSON API shows `allowed`/`reason` per action, and the web table enables or greys out its buttons.
Pure: facts of the row + what the workflow has done + today → answers. No I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from domain.calendar import add_months as add_months  # re-exported: callers import it from here
from domain.money import display, split_remainder_first


class Action(StrEnum):
    """The table's buttons; each value is the name of the workflow update that runs it."""

    CREATE_CUSTOMER = "create_customer"
    CREATE_INVOICE = "create_invoice"
    SEND_INVOICE = "send_invoice"
    APPLY_CREDIT = "apply_credit"
    SCHEDULE_SUBSCRIPTION = "schedule_subscription"
    CREATE_MONTHLY_SUBSCRIPTION = "create_monthly_subscription"
    APPLY_CREDIT_MONTHLY = "apply_credit_monthly"
    SYNC_BILLING_SERVICE = "sync_billing_service"
    RETRY_STEP = "retry_step"


class PaymentSchedule(StrEnum):
    UPFRONT = "upfront"
    MONTHLY = "monthly"


class CreditState(StrEnum):
    NONE = "none"
    ARMED = "armed"
    SCHEDULED = "scheduled"
    RELEASING = "releasing"
    APPLIED = "applied"


class InvoiceStatus(StrEnum):
    """Stripe's invoice statuses (values as Stripe spells them, so recorded histories replay)."""

    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


UPFRONT_ACTIONS = ("create_customer", "create_invoice", "send_invoice", "apply_credit", "schedule_subscription")
MONTHLY_ACTIONS = ("create_customer", "create_monthly_subscription", "apply_credit_monthly", "sync_billing_service")
ACTIONS = (
    "create_customer", "create_invoice", "send_invoice", "apply_credit", "schedule_subscription",
    "create_monthly_subscription", "apply_credit_monthly", "sync_billing_service", "retry_step",
)
ACTION_LABELS = {
    "create_customer": "Create Stripe Customer",
    "create_invoice": "Create Invoice - Upfront",
    "send_invoice": "Send invoice",
    "apply_credit": "Apply Credit",
    "schedule_subscription": "Schedule Subscription",
    "create_monthly_subscription": "Create and Add - Monthly Sub",
    "apply_credit_monthly": "Apply credit - monthly",
    "sync_billing_service": "Update billing service",
    "retry_step": "Retry step",
}

STATE_LABELS = {
    "needs_review": "Needs review",
    "new": "New",
    "step_failed": "A step failed",
    "customer_ready": "Customer ready",
    "invoice_draft": "Invoice drafted, to verify",
    "awaiting_payment": "Invoice sent, awaiting payment",
    "overdue": "Invoice overdue",
    "invoice_void": "Invoice voided",
    "invoice_uncollectible": "Invoice uncollectible",
    "paid": "Paid",
    "credit_scheduled": "Credit scheduled",
    "credit_applied": "Credit applied",
    "subscription_ready": "Monthly subscription created",
    "credit_releasing": "Credit released per paid installment",
    "credit_on_hold": "Credit on hold: payment to re-check",
    "done": "Done",
}
STATES = tuple(STATE_LABELS)

# Search attributes of plan workflows in the Temporal UI (name → Temporal's type), kept current
# by the workflow. A namespace must have them registered before a worker runs the workflow:
# upserting an unknown one fails the workflow task (`make dev` and the test servers register them,
# a cluster needs `temporal operator search-attribute create`, see docs/plans.md).
SEARCH_ATTRIBUTES = {
    "PlanId": "Int",
    "PlanState": "Keyword",
    "CompanyName": "Text",
    "PaymentSchedule": "Keyword",
    "StripeCustomerId": "Keyword",
}

# Credit progress on a row (names kept for the callers that import them).
CREDIT_NONE, CREDIT_ARMED, CREDIT_SCHEDULED, CREDIT_RELEASING, CREDIT_APPLIED = (
    CreditState.NONE, CreditState.ARMED, CreditState.SCHEDULED, CreditState.RELEASING, CreditState.APPLIED)


@dataclass
class PlanFacts:
    """The row's input fields as the workflow needs them (plain types: they cross Temporal)."""

    plan_id: int
    company_name: str = ""
    customer_email: str = ""
    credit_amount: int = 0
    discount: str = "0"
    price: int = 0
    currency: str = "usd"
    start_date: str | None = None  # ISO date
    term_months: int = 12
    posthog_org_id: str | None = None
    pandadoc_id: str | None = None
    payment_schedule: str = "upfront"
    credit_start: str = "immediately"
    credit_release: str = "all"
    payment_terms_days: int = 30
    products: list[str] = field(default_factory=list)
    stripe_customer_id_existing: str | None = None
    input_errors: list[str] = field(default_factory=list)  # sentences; non-empty = needs review

    @property
    def start(self) -> date | None:
        return date.fromisoformat(self.start_date) if self.start_date else None


@dataclass
class Progress:
    """What the plan's workflow has done so far; projected onto the row as `workflow_view.progress`."""

    customer_id: str | None = None
    customer_is_existing: bool = False
    invoice_id: str | None = None
    invoice_status: str | None = None  # draft | open | paid | void | uncollectible
    invoice_due_date: str | None = None
    credit: str = CREDIT_NONE
    credit_scheduled_for: str | None = None  # ISO datetime
    credit_applied_at: str | None = None
    credit_transaction_ids: list[str] = field(default_factory=list)
    credit_released: int = 0  # minor units put on the customer so far
    shares_released: int = 0
    installments_paid: list[str] = field(default_factory=list)  # invoice ids
    schedule_id: str | None = None
    schedule_skipped: str | None = None  # the reason, when the customer already subscribes
    monthly_price_id: str | None = None
    subscription_id: str | None = None
    subscription_schedule_id: str | None = None  # monthly plan starting in the future
    first_invoice_id: str | None = None
    billing_synced: bool = False
    billing_sync_waiting: bool = False  # clicked before the schedule made the subscription: sent then
    # Renewals: the customer's old credit balance set aside while the new invoice is finalized, so
    # Stripe cannot pay the new invoice with it; given back once the invoice is paid or voided.
    held_balance: int = 0
    held_balance_txn: str | None = None
    held_balance_returned_txn: str | None = None
    existing_credit_used: int = 0  # an operator let the old credit pay the invoice (send_invoice param)
    credit_hold: str | None = None  # why a credit is held back (refund, credit note, dispute, not paid in money)
    partial: dict[str, str] = field(default_factory=dict)  # ids made by a step that failed half-way
    key_generation: int = 0  # "Retry step" after a replayed Stripe 500 sends fresh idempotency keys
    checks: list[dict[str, str]] = field(default_factory=list)  # what to verify before sending
    running: str | None = None
    failed_action: str | None = None
    failed_message: str | None = None


# ---------------------------------------------------------------------------------------- dates

def term_end(start: date, term_months: int) -> date:
    return add_months(start, term_months)


def invoice_due_date(start: date, payment_terms_days: int) -> date:
    """The runbook: contract start date + payment terms (30 days by default)."""
    return start + timedelta(days=payment_terms_days)


def due_date_problem(facts: PlanFacts, today: date) -> str | None:
    """Why the upfront invoice cannot be created with this row's dates, or None."""
    start = facts.start
    if start is None:
        return "The row has no start date; set one, the invoice's due date is counted from it."
    due = invoice_due_date(start, facts.payment_terms_days)
    if due < today:
        return (f"The invoice would be due on {due.isoformat()} (start date {start.isoformat()} + "
                f"{facts.payment_terms_days} days of payment terms), which is in the past; change the "
                f"start date or the payment terms first.")
    return None


def monthly_window(start: date, term_months: int) -> tuple[date, date]:
    """When the subscription of a monthly plan bills (months 2..N): its first paid period begins
    at `trial_end` (a month after the start), and it stops at `cancel_at`.

    Stripe counts every later period from that anchor (anchor + n months, clamped to the month's
    end), not from the contract's start: a start on the 31st anchors on the 30th of April, and
    the term's last period ends on the 30th, not the 31st. `cancel_at` is that anchor plus N-1
    months, so the subscription bills exactly N-1 times and is never charged a stub period.
    """
    anchor = add_months(start, 1)
    return anchor, add_months(anchor, max(term_months - 1, 0))


def billing_sync_due(facts: PlanFacts) -> date:
    """When a future-start monthly plan's schedule makes its subscription: month 2 of the term."""
    assert facts.start is not None
    return monthly_window(facts.start, facts.term_months)[0]


def monthly_start_problem(facts: PlanFacts, today: date) -> str | None:
    """Why the monthly installments cannot start from this row's start date, or None.

    The first installment is due `payment_terms_days` after it is sent; a start further back than
    that would bill months already over, and Stripe refuses a `trial_end` in the past.
    """
    start = facts.start
    if start is None:
        return "The row has no start date; set one first."
    latest = invoice_due_date(start, facts.payment_terms_days)
    trial_end, _ = monthly_window(start, facts.term_months)
    if latest < today or (facts.term_months > 1 and trial_end <= today):
        return (f"The start date {start.isoformat()} is too far in the past for monthly installments "
                f"(it may be at most {facts.payment_terms_days} days of payment terms back, and the second "
                f"month must still be ahead); change the start date first.")
    return None


def end_of_day(day: date) -> datetime:
    """Stripe wants a due date in the future: the last second of that day, UTC."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def credit_release_time(period_end: datetime | None, start: date | None, now: datetime) -> datetime:
    """"Next billing cycle": the end of the customer's current billing period; without a running
    subscription, the contract's start date if still ahead; otherwise now."""
    if period_end is not None and period_end > now:
        return period_end
    if start is not None:
        start_at = datetime.combine(start, time(0, 0), tzinfo=UTC)
        if start_at > now:
            return start_at
    return now


# ---------------------------------------------------------------------------------------- money

@dataclass(frozen=True)
class Installments:
    """Monthly installments of a price: `monthly` each month, the remainder once on the first."""

    monthly: int
    remainder: int
    months: int

    @property
    def amounts(self) -> list[int]:
        return split_remainder_first(self.monthly * self.months + self.remainder, self.months)


def installments(price: int, months: int) -> Installments:
    parts = split_remainder_first(price, months)
    base = parts[-1] if months > 1 else parts[0]
    return Installments(monthly=base, remainder=parts[0] - base, months=months)


def credit_shares(credit: int, months: int) -> list[int]:
    """Per-installment release: share i is released when installment i is paid; they add up to
    the credit exactly (the remainder goes with the first)."""
    return split_remainder_first(credit, months)


# ---------------------------------------------------------------------------------------- rules

def _schedule_mismatch(action: str, facts: PlanFacts) -> str | None:
    if action == "retry_step" or action == "create_customer":
        return None
    if facts.payment_schedule == PaymentSchedule.MONTHLY and action not in MONTHLY_ACTIONS:
        return (f"This is a monthly plan; \"{ACTION_LABELS[action]}\" belongs to upfront plans. "
                f"Use \"{ACTION_LABELS['create_monthly_subscription']}\" and the monthly steps.")
    if facts.payment_schedule != PaymentSchedule.MONTHLY and action not in UPFRONT_ACTIONS:
        return (f"This is an upfront plan; \"{ACTION_LABELS[action]}\" belongs to monthly plans.")
    return None


def _upfront(action: str, facts: PlanFacts, p: Progress, today: date) -> tuple[bool, str]:
    if action == "create_customer":
        if p.customer_id:
            return False, f"Done: the customer is {p.customer_id}."
        if facts.stripe_customer_id_existing:
            return True, f"Uses the existing Stripe customer {facts.stripe_customer_id_existing}."
        return True, "Creates the Stripe customer for this row."
    if action == "create_invoice":
        if p.invoice_id:
            return False, f"Done: the invoice is {p.invoice_id}."
        if not p.customer_id:
            return False, "Create the Stripe customer first."
        problem = due_date_problem(facts, today)
        if problem:
            return False, problem
        return True, f"Creates a draft invoice of {display(facts.price, facts.currency)}."
    if action == "send_invoice":
        if not p.invoice_id:
            return False, "Create the invoice first."
        if p.invoice_status != InvoiceStatus.DRAFT:
            return False, f"Done: the invoice was sent (it is {p.invoice_status})."
        return True, ("Finalizes and sends the invoice; check the customer's addresses and tax ids first. A credit "
                      "balance the customer already holds is set aside until the invoice is paid or voided, so it "
                      "cannot pay it (send use_existing_credit=true to let it).")
    if action == "apply_credit":
        if p.credit != CREDIT_NONE:
            done: dict[str, str] = {
                CREDIT_ARMED: "Already armed: the credit is applied when the invoice is paid.",
                CREDIT_SCHEDULED: f"Already scheduled for {p.credit_scheduled_for}.",
                CREDIT_APPLIED: f"Done: the credit was applied at {p.credit_applied_at}.",
            }
            return False, done.get(p.credit, "Already done.")
        if p.invoice_status in (InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE):
            return False, f"The invoice is {p.invoice_status}: no credit is given for it."
        if p.invoice_status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
            return False, "Send the invoice first: credits are only given against a sent invoice."
        if p.invoice_status != InvoiceStatus.PAID:
            return True, "The invoice is not paid yet: the credit is armed and applied once it is paid."
        if facts.credit_start == "next_billing_cycle":
            return True, "Schedules the credit for the end of the customer's current billing period."
        return True, f"Applies a credit of {display(facts.credit_amount, facts.currency)}."
    if action == "schedule_subscription":
        if p.schedule_id:
            return False, f"Done: the subscription schedule is {p.schedule_id}."
        if p.schedule_skipped:
            return False, f"Skipped: {p.schedule_skipped}"
        if p.invoice_status != InvoiceStatus.PAID:
            return False, "Wait for the invoice to be paid before scheduling the subscription."
        if not facts.products and not p.customer_is_existing:
            return False, "Check at least one product to subscribe to."
        return True, "Creates the subscription schedule for the checked products over the term."
    raise ValueError(action)  # pragma: no cover


def _monthly(action: str, facts: PlanFacts, p: Progress, today: date) -> tuple[bool, str]:
    if action == "create_customer":
        if p.customer_id:
            return False, f"Done: the installment customer is {p.customer_id}."
        if not facts.stripe_customer_id_existing:
            return False, ("A monthly plan needs \"Stripe ID - existing\" (the credits go there); "
                           "fill it in on the row first.")
        return True, (f"Creates a new customer for the installments, linked to "
                      f"{facts.stripe_customer_id_existing}.")
    if action == "create_monthly_subscription":
        if p.subscription_id or p.subscription_schedule_id:
            return False, f"Done: the subscription is {p.subscription_id or p.subscription_schedule_id}."
        if p.first_invoice_id:
            return False, f"Done: the single installment is the invoice {p.first_invoice_id}."
        if not p.customer_id:
            return False, "Create the installment customer first."
        problem = monthly_start_problem(facts, today)
        if problem:
            return False, problem
        split = installments(facts.price, facts.term_months)
        return True, (f"Creates a monthly price of {display(split.monthly, facts.currency)} for "
                      f"{facts.term_months} months and the subscription.")
    if action == "apply_credit_monthly":
        if p.credit != CREDIT_NONE:
            return False, ("Done: the credit is released per paid installment."
                           if facts.credit_release == "per_installment"
                           else f"Done: the credit was applied at {p.credit_applied_at}.")
        if not monthly_billing_made(p):
            return False, "Create the monthly subscription first."
        if facts.credit_release == "per_installment":
            return True, "Releases the credit on the existing customer installment by installment, as each is paid."
        return True, (f"Applies a credit of {display(facts.credit_amount, facts.currency)} on the existing "
                      f"customer {facts.stripe_customer_id_existing}.")
    if action == "sync_billing_service":
        if p.billing_synced:
            return False, "Done: the billing service has the mapping."
        if p.credit == CREDIT_NONE:
            return False, "Apply the monthly credit first."
        if not facts.posthog_org_id:
            return False, "The row has no PostHog org id; the billing service maps an org, so fill it in first."
        if p.billing_sync_waiting:
            return False, (f"Waiting: the mapping is sent once the schedule {p.subscription_schedule_id} has made "
                           f"the subscription (from {billing_sync_due(facts).isoformat()}).")
        if not p.subscription_id and facts.term_months > 1:
            return True, (f"The subscription does not exist yet (the schedule {p.subscription_schedule_id} creates "
                          f"it on {billing_sync_due(facts).isoformat()}); the mapping is sent once Stripe has made it.")
        return True, "Stores the org → customer → subscription mapping and sends it to the billing service."
    raise ValueError(action)  # pragma: no cover


def monthly_billing_made(p: Progress) -> bool:
    """The installments exist in Stripe: a subscription, a schedule, or (a one-month plan) the
    single installment invoice."""
    return bool(p.subscription_id or p.subscription_schedule_id or p.first_invoice_id)


def action_state(action: str, facts: PlanFacts, progress: Progress, today: date) -> tuple[bool, str]:
    """May `action` run now, and the sentence saying why (not)."""
    if action not in ACTIONS:
        return False, f"{action!r} is not an action; use one of {', '.join(ACTIONS)}."
    if facts.input_errors:
        return False, "Fix the row first: " + " ".join(facts.input_errors)
    if progress.running:
        return False, f"\"{ACTION_LABELS[progress.running]}\" is running; wait for it to finish."
    if action == "retry_step":
        if not progress.failed_action:
            return False, "No step has failed."
        return True, f"Runs \"{ACTION_LABELS[progress.failed_action]}\" again with the row as it is now."
    if progress.failed_action:
        return False, (f"\"{ACTION_LABELS[progress.failed_action]}\" failed: {progress.failed_message} "
                       f"Fix the row, then use \"Retry step\".")
    mismatch = _schedule_mismatch(action, facts)
    if mismatch:
        return False, mismatch
    if facts.payment_schedule == PaymentSchedule.MONTHLY:
        return _monthly(action, facts, progress, today)
    return _upfront(action, facts, progress, today)


def action_states(facts: PlanFacts, progress: Progress, today: date) -> dict[str, tuple[bool, str]]:
    return {action: action_state(action, facts, progress, today) for action in ACTIONS}


def is_done(facts: PlanFacts, p: Progress) -> bool:
    if facts.payment_schedule == PaymentSchedule.MONTHLY:
        credit_done = p.credit == CREDIT_APPLIED
        return p.billing_synced and credit_done
    return p.credit == CREDIT_APPLIED and bool(p.schedule_id or p.schedule_skipped)


def plan_state(facts: PlanFacts, p: Progress, today: date) -> str:
    """One state name per row (keys of STATE_LABELS), for the table and the API."""
    if facts.input_errors:
        return "needs_review"
    if p.credit_hold and p.credit != CREDIT_APPLIED:
        return "credit_on_hold"
    if p.failed_action:
        return "step_failed"
    if is_done(facts, p):
        return "done"
    if facts.payment_schedule == PaymentSchedule.MONTHLY:
        if p.credit == CREDIT_RELEASING:
            return "credit_releasing"
        if p.credit == CREDIT_APPLIED:
            return "credit_applied"
        if monthly_billing_made(p):
            return "subscription_ready"
        return "customer_ready" if p.customer_id else "new"
    if p.credit == CREDIT_APPLIED:
        return "credit_applied"
    if p.credit == CREDIT_SCHEDULED:
        return "credit_scheduled"
    if p.invoice_status == InvoiceStatus.PAID:
        return "paid"
    if p.invoice_status == InvoiceStatus.VOID:
        return "invoice_void"
    if p.invoice_status == InvoiceStatus.UNCOLLECTIBLE:
        return "invoice_uncollectible"
    if p.invoice_status == InvoiceStatus.OPEN:
        due = date.fromisoformat(p.invoice_due_date) if p.invoice_due_date else None
        return "overdue" if due is not None and due < today else "awaiting_payment"
    if p.invoice_id:
        return "invoice_draft"
    return "customer_ready" if p.customer_id else "new"


# What a person checks before the invoice goes out (runbook step 3 / monthly step 4).
CUSTOMER_CHECKS = (
    ("address", "Billing address"),
    ("shipping", "Shipping address"),
    ("tax_ids", "Tax ids"),
)

# Runbook, monthly setup: the new installment customer gets new virtual bank account details,
# which the customer must be sent (its old ones pay the old customer). Stripe's bank transfer type
# per currency; EUR is left out because Stripe asks for the account's country (DE, FR, IE, NL).
BANK_TRANSFER_CHECK = "bank_transfer"
BANK_TRANSFER_TO_SEND = "to send"
BANK_TRANSFER_TYPES = {
    "usd": "us_bank_transfer",
    "gbp": "gb_bank_transfer",
    "jpy": "jp_bank_transfer",
    "mxn": "mx_bank_transfer",
}


# ------------------------------------------------- messages between web app, workflow, activities

@dataclass
class ActionRequest:
    """A button click: who, the row as it is now (a PATCH before "Retry step" is picked up here)."""

    actor: str
    facts: PlanFacts
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class ActionResult:
    ok: bool
    action: str
    message: str
    state: str = ""


@dataclass
class InvoiceEvent:
    """A Stripe invoice event forwarded by the webhook receiver (or found by polling)."""

    invoice_id: str
    # invoice.paid | invoice.voided | invoice.marked_uncollectible; and the events that take paid
    # money back: charge.refunded, credit_note.created, charge.dispute.created / .closed
    event_type: str
    event_id: str = ""
    customer_id: str | None = None
    amount: int | None = None  # the invoice total; a $0 invoice is no installment


@dataclass
class StepInput:
    facts: PlanFacts
    progress: Progress
    now: str  # workflow time, ISO; activities use it instead of reading a clock
    share_index: int = 0
    params: dict[str, str] = field(default_factory=dict)  # what the operator chose on the click


@dataclass
class StepOutput:
    progress: Progress
    result: dict[str, str] = field(default_factory=dict)  # Stripe ids and notes for the timeline


@dataclass
class AuditNote:
    actor: str
    action: str
    outcome: str  # ok | failed | info
    key: str  # dedupe key: the same entry written twice (activity retry) lands once
    input: dict[str, str] = field(default_factory=dict)
    result: dict[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Projection:
    """What the row shows of the workflow: written by the `plan_project` activity."""

    facts: PlanFacts
    progress: Progress
    now: str
    seq: int  # a later projection never loses to an earlier one that arrives late
    audit: AuditNote | None = None


def progress_from_view(view: dict[str, object] | None) -> Progress:
    """The row's stored `workflow_view.progress` back as `Progress` (unknown keys ignored)."""
    raw = (view or {}).get("progress")
    if not isinstance(raw, dict):
        return Progress()
    known = {f for f in Progress.__dataclass_fields__}
    return Progress(**{k: v for k, v in raw.items() if k in known})


def locked_fields(facts: PlanFacts, p: Progress) -> dict[str, str]:
    """Fields a person may no longer change because Stripe already holds them, with the reason."""
    locked: dict[str, str] = {}
    if p.customer_id:
        why = f"the Stripe customer {p.customer_id} was already set up from it"
        for name in ("stripe_customer_id_existing", "payment_schedule"):
            locked[name] = why
    billed = (p.invoice_id or p.monthly_price_id or p.subscription_id or p.subscription_schedule_id
              or p.first_invoice_id)
    if billed:
        why = f"{billed} was already made from it in Stripe; change it there and leave the row as it is"
        for name in ("price", "currency", "start_date", "term_months", "payment_terms_days"):
            locked[name] = why
    if p.invoice_id:
        # The upfront invoice states the credit bought and the discount: the customer pays for those.
        why = f"the invoice {p.invoice_id} states it; void the invoice in Stripe and make a new row instead"
        for name in ("credit_amount", "discount"):
            locked[name] = why
    if p.credit != CREDIT_NONE:
        for name in ("credit_amount", "credit_start", "credit_release"):
            locked[name] = "the credit was already armed or applied"
    if p.schedule_id:
        locked["products"] = f"the subscription schedule {p.schedule_id} was already made from them"
    return locked
