"""The revenue warehouse: Stripe objects in SQL, the revenue schedule, sync checkpoints, rates.

Every Stripe table keeps the object's raw JSON (`raw`, exactly as the API returned it) beside the
typed columns reports query on, a `deleted_at` for soft deletes (deleted customers, products,
draft invoices; rows are never removed), and `event_created`: the `created` time of the last
event applied to the row, so an older event replayed late cannot overwrite a newer state.

Money is integer minor units beside a lowercase ISO currency, as Stripe sends it.

Views (created by migrations 0004_warehouse and 0007_revenue_views, not models):
`persons_revenue_analytics` and `groups_revenue_analytics` (one row per person / group in the
reporting currency), `…_by_currency` beside them (a row per currency), see docs/revenue.md.
`amount` there is in MAJOR units (dollars, as in the seed's `amount > 1000000`), `amount_minor`
the same in minor units.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.models import Base, utcnow

ID = String(255)


def ts(value: Any) -> datetime | None:
    """A Stripe unix timestamp as an aware UTC datetime."""
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(value), UTC)


def _id(value: Any) -> str | None:
    """An expandable field: either an id string or an expanded object with an `id`."""
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) else None


class StripeObject:
    """Columns every warehouse table of Stripe objects shares."""

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    created: Mapped[datetime | None] = mapped_column(index=True)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    deleted_at: Mapped[datetime | None]
    event_created: Mapped[int | None] = mapped_column(BigInteger)  # unix seconds of the last applied event
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class StripeCustomer(StripeObject, Base):
    __tablename__ = "stripe_customers"

    email: Mapped[str | None] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(255))
    currency: Mapped[str | None] = mapped_column(String(3))
    # Resolved by domain.persons after each change to the customer or its children.
    person_distinct_id: Mapped[str | None] = mapped_column(String(255), index=True)
    person_source: Mapped[str | None] = mapped_column(String(300))
    group_key: Mapped[str | None] = mapped_column(String(255), index=True)
    group_source: Mapped[str | None] = mapped_column(String(300))
    # A monthly plan's installment customer keeps its books with the customer that holds the
    # plan's credit (metadata `existing_customer_id`), so money and credit meet in one ledger.
    ledger_customer_id: Mapped[str | None] = mapped_column(ID, index=True)
    plan_key: Mapped[str | None] = mapped_column(String(300))


class StripeCharge(StripeObject, Base):
    __tablename__ = "stripe_charges"

    customer_id: Mapped[str | None] = mapped_column(ID, index=True)
    invoice_id: Mapped[str | None] = mapped_column(ID, index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(ID, index=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    status: Mapped[str | None] = mapped_column(String(32))
    paid: Mapped[bool] = mapped_column(Boolean, default=False)


class StripeInvoice(StripeObject, Base):
    __tablename__ = "stripe_invoices"

    customer_id: Mapped[str | None] = mapped_column(ID, index=True)
    subscription_id: Mapped[str | None] = mapped_column(ID, index=True)
    status: Mapped[str | None] = mapped_column(String(32), index=True)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_at: Mapped[datetime | None] = mapped_column(index=True)
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    tax: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    balance_applied: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    plan_key: Mapped[str | None] = mapped_column(String(300))  # installation:plan id, a plan's own invoice
    finalized_at: Mapped[datetime | None]


class StripeInvoiceLine(StripeObject, Base):
    __tablename__ = "stripe_invoice_lines"

    invoice_id: Mapped[str] = mapped_column(ID, index=True)
    subscription_id: Mapped[str | None] = mapped_column(ID)
    price_id: Mapped[str | None] = mapped_column(ID)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    discount_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    quantity: Mapped[int | None] = mapped_column(BigInteger)
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    tax_inclusive: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # VAT inside `amount`


class StripeInvoicePayment(StripeObject, Base):
    """Which charge or payment intent paid (part of) which invoice: Stripe's own link since 2025,
    from the invoice's expanded `payments` and `invoice_payment.*` events."""

    __tablename__ = "stripe_invoice_payments"

    invoice_id: Mapped[str | None] = mapped_column(ID, index=True)
    charge_id: Mapped[str | None] = mapped_column(ID, index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(ID, index=True)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    status: Mapped[str | None] = mapped_column(String(32))
    paid_at: Mapped[datetime | None]


class StripeInvoiceItem(StripeObject, Base):
    __tablename__ = "stripe_invoice_items"

    customer_id: Mapped[str | None] = mapped_column(ID, index=True)
    invoice_id: Mapped[str | None] = mapped_column(ID, index=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")


class StripePrice(StripeObject, Base):
    __tablename__ = "stripe_prices"

    product_id: Mapped[str | None] = mapped_column(ID, index=True)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    unit_amount: Mapped[int | None] = mapped_column(BigInteger)
    type: Mapped[str | None] = mapped_column(String(16))
    interval: Mapped[str | None] = mapped_column(String(8))
    interval_count: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class StripeProduct(StripeObject, Base):
    __tablename__ = "stripe_products"

    name: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class StripeSubscription(StripeObject, Base):
    __tablename__ = "stripe_subscriptions"

    customer_id: Mapped[str | None] = mapped_column(ID, index=True)
    status: Mapped[str | None] = mapped_column(String(32), index=True)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    start_date: Mapped[datetime | None]
    trial_end: Mapped[datetime | None]
    cancel_at: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class StripeSubscriptionItem(StripeObject, Base):
    __tablename__ = "stripe_subscription_items"

    subscription_id: Mapped[str] = mapped_column(ID, index=True)
    price_id: Mapped[str | None] = mapped_column(ID)
    quantity: Mapped[int] = mapped_column(BigInteger, default=1)


class StripeSubscriptionSchedule(StripeObject, Base):
    __tablename__ = "stripe_subscription_schedules"

    customer_id: Mapped[str | None] = mapped_column(ID, index=True)
    subscription_id: Mapped[str | None] = mapped_column(ID)
    status: Mapped[str | None] = mapped_column(String(32))


class StripeCustomerBalanceTransaction(StripeObject, Base):
    __tablename__ = "stripe_customer_balance_transactions"

    customer_id: Mapped[str | None] = mapped_column(ID, index=True)
    invoice_id: Mapped[str | None] = mapped_column(ID)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)  # negative = a credit to the customer
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    type: Mapped[str | None] = mapped_column(String(64))
    plan_key: Mapped[str | None] = mapped_column(String(300))  # a plan's credit (metadata revops_kind)


class StripeBalanceTransaction(StripeObject, Base):
    __tablename__ = "stripe_balance_transactions"

    source_id: Mapped[str | None] = mapped_column(ID, index=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    net: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    type: Mapped[str | None] = mapped_column(String(64))
    reporting_category: Mapped[str | None] = mapped_column(String(64))


class StripeRefund(StripeObject, Base):
    __tablename__ = "stripe_refunds"

    charge_id: Mapped[str | None] = mapped_column(ID, index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(ID)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    status: Mapped[str | None] = mapped_column(String(32))


class StripeCreditNote(StripeObject, Base):
    __tablename__ = "stripe_credit_notes"

    invoice_id: Mapped[str | None] = mapped_column(ID, index=True)
    customer_id: Mapped[str | None] = mapped_column(ID, index=True)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    status: Mapped[str | None] = mapped_column(String(32))
    total_excluding_tax: Mapped[int | None] = mapped_column(BigInteger)


class StripeDispute(StripeObject, Base):
    __tablename__ = "stripe_disputes"

    charge_id: Mapped[str | None] = mapped_column(ID, index=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    status: Mapped[str | None] = mapped_column(String(32))
    lost_at: Mapped[datetime | None]  # when the money left: the dispute's withdrawal


class RevenueSyncRun(Base):
    """One sync run. A full run lists everything created before `upper_bound`; an unfinished run
    is resumed from its checkpoints instead of starting over."""

    __tablename__ = "revenue_sync_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # full | incremental
    upper_bound: Mapped[int] = mapped_column(BigInteger)  # unix seconds: objects created before it
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    objects: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class RevenueSyncCheckpoint(Base):
    """A `created` window of one object type in a full run, and how far it has been paged.

    Windows split while running (an idle worker takes the older half); together a run's windows
    always cover [lower, upper) exactly, so resuming them leaves no gap and no overlap."""

    __tablename__ = "revenue_sync_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer, index=True)
    object_type: Mapped[str] = mapped_column(String(64))
    created_gte: Mapped[int] = mapped_column(BigInteger)
    created_lt: Mapped[int] = mapped_column(BigInteger)
    starting_after: Mapped[str | None] = mapped_column(ID)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    objects: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RevenueSyncCursor(Base):
    """Named cursors: `events` = created time of the newest event applied (unix seconds)."""

    __tablename__ = "revenue_sync_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RevenueScheduleEntry(Base):
    """Recognised revenue per invoice (or plan, credit, one-off charge), calendar month and day
    booked (`line_id` is `<invoice or obligation>@<day booked>`). The reports read its totals
    (store/revenue_totals.py), so it keeps only the indexes a rebuild and the few plan and
    charge reads need (migration 0012)."""

    __tablename__ = "revenue_schedule"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_type: Mapped[str] = mapped_column(String(16))  # invoice | charge
    source_id: Mapped[str] = mapped_column(ID)  # invoice, charge, plan invoice or balance transaction id
    line_id: Mapped[str] = mapped_column(ID)
    customer_id: Mapped[str | None] = mapped_column(ID)  # first column of the unique key: deleted by
    month: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    currency_unit: Mapped[int] = mapped_column(Integer, default=100)  # minor units per major unit
    gross: Mapped[int] = mapped_column(BigInteger)
    net: Mapped[int] = mapped_column(BigInteger)
    paid_at: Mapped[datetime | None]  # when it was booked

    __table_args__ = (UniqueConstraint("customer_id", "line_id", "month",
                                       name="uq_revenue_schedule_customer_line_month"),)


class RevenueReporting(Base):
    """The reporting currency the analytics views convert into (one row, kept equal to
    REPORTING_CURRENCY by every revenue rebuild; created by migration 0007_revenue_views)."""

    __tablename__ = "revenue_reporting"

    id: Mapped[int] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    currency_unit: Mapped[int] = mapped_column(Integer)  # minor units per major unit


class ExchangeRate(Base):
    """1 unit of `currency` = `rate` units of `reporting_currency` (major units), from `valid_from`."""

    __tablename__ = "exchange_rates"

    id: Mapped[int] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    reporting_currency: Mapped[str] = mapped_column(String(3))
    rate: Mapped[Decimal] = mapped_column(Numeric(24, 12))
    valid_from: Mapped[date] = mapped_column(Date)

    __table_args__ = (
        UniqueConstraint("currency", "reporting_currency", "valid_from", name="uq_exchange_rates_pair_day"),
    )


Index("ix_stripe_invoices_plan_key", StripeInvoice.plan_key, sqlite_where=text("plan_key IS NOT NULL"),
      postgresql_where=text("plan_key IS NOT NULL"))
# The few plan and one-off charge rows (contracted revenue, one-offs), apart from a million invoice rows.
for _kind in ("plan", "charge"):
    Index(f"ix_revenue_schedule_{_kind}_month", RevenueScheduleEntry.month,
          sqlite_where=text(f"source_type = '{_kind}'"), postgresql_where=text(f"source_type = '{_kind}'"))


# --- Stripe JSON → typed columns -------------------------------------------------------------

PLAN_CREDIT_KINDS = frozenset({"plan_credit", "monthly_credit", "monthly_credit_share"})
PLAN_INVOICE_KINDS = frozenset({"upfront_invoice", "first_installment", "monthly_subscription"})


def plan_key(metadata: Any, kinds: frozenset[str] | None = None) -> str | None:
    """`installation:plan id` of an object the plan workflows made (activities/plan.py metadata)."""
    if not isinstance(metadata, dict) or not metadata.get("plan_id"):
        return None
    if kinds is not None and metadata.get("revops_kind") not in kinds:
        return None
    return f"{metadata.get('revops_installation') or ''}:{metadata['plan_id']}"


def _customer(o: dict[str, Any]) -> dict[str, Any]:
    metadata = o.get("metadata") or {}
    installment = metadata.get("revops_kind") == "installment_customer"
    return {"email": o.get("email"), "name": o.get("name"), "currency": o.get("currency"),
            "ledger_customer_id": (metadata.get("existing_customer_id") or None) if installment else None,
            "plan_key": plan_key(metadata) if installment else None}


def _charge_invoice(o: dict[str, Any]) -> str | None:
    # `invoice` left charges in 2025; older payloads and the sandbox may still carry it.
    return _id(o.get("invoice"))


def _charge(o: dict[str, Any]) -> dict[str, Any]:
    return {"customer_id": _id(o.get("customer")), "invoice_id": _charge_invoice(o),
            "payment_intent_id": _id(o.get("payment_intent")), "amount": o.get("amount") or 0,
            "amount_refunded": o.get("amount_refunded") or 0, "currency": o.get("currency") or "usd",
            "status": o.get("status"), "paid": bool(o.get("paid"))}


def invoice_subscription(o: dict[str, Any]) -> str | None:
    parent = o.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return _id(details.get("subscription")) or _id(o.get("subscription"))


def _invoice_tax(o: dict[str, Any]) -> int:
    total = int(o.get("total") or 0)
    if o.get("total_excluding_tax") is not None:
        return total - int(o["total_excluding_tax"])
    taxes = o.get("total_taxes") or o.get("total_tax_amounts") or []
    return sum(int(t.get("amount") or 0) for t in taxes if isinstance(t, dict))


def _balance_applied(o: dict[str, Any]) -> int:
    """What the customer balance paid of this invoice (a credit balance going towards zero)."""
    starting, ending = o.get("starting_balance"), o.get("ending_balance")
    if starting is None or ending is None or int(starting) >= 0:
        return 0
    return max(min(int(ending) - int(starting), int(o.get("total") or 0)), 0)


def _invoice(o: dict[str, Any]) -> dict[str, Any]:
    transitions = o.get("status_transitions") or {}
    parent = o.get("parent") or {}
    sub_metadata = (parent.get("subscription_details") or {}).get("metadata")
    return {"customer_id": _id(o.get("customer")), "subscription_id": invoice_subscription(o),
            "status": o.get("status"), "currency": o.get("currency") or "usd", "total": o.get("total") or 0,
            "amount_paid": o.get("amount_paid") or 0, "paid_at": ts(transitions.get("paid_at")),
            "period_start": ts(o.get("period_start")), "period_end": ts(o.get("period_end")),
            "tax": _invoice_tax(o), "balance_applied": _balance_applied(o),
            "plan_key": plan_key(o.get("metadata"), PLAN_INVOICE_KINDS) or plan_key(sub_metadata, PLAN_INVOICE_KINDS),
            "finalized_at": ts(transitions.get("finalized_at"))}


def _inclusive_tax(o: dict[str, Any]) -> int:
    total = 0
    for t in o.get("taxes") or []:  # current API
        if isinstance(t, dict) and t.get("tax_behavior") == "inclusive":
            total += int(t.get("amount") or 0)
    for t in o.get("tax_amounts") or []:  # before 2025
        if isinstance(t, dict) and t.get("inclusive"):
            total += int(t.get("amount") or 0)
    return total


def _line(o: dict[str, Any]) -> dict[str, Any]:
    period = o.get("period") or {}
    pricing = o.get("pricing") or {}
    price_details = pricing.get("price_details") or {}
    parent = o.get("parent") or {}
    sub_details = parent.get("subscription_item_details") or {}
    return {"invoice_id": _id(o.get("invoice")), "subscription_id": _id(sub_details.get("subscription"))
            or _id(o.get("subscription")), "price_id": _id(price_details.get("price")) or _id(o.get("price")),
            "amount": o.get("amount") or 0,
            "discount_amount": sum(d.get("amount") or 0 for d in o.get("discount_amounts") or []),
            "currency": o.get("currency") or "usd", "quantity": o.get("quantity"),
            "period_start": ts(period.get("start")), "period_end": ts(period.get("end")),
            "tax_inclusive": _inclusive_tax(o)}


def _invoice_payment(o: dict[str, Any]) -> dict[str, Any]:
    payment = o.get("payment") or {}
    transitions = o.get("status_transitions") or {}
    return {"invoice_id": _id(o.get("invoice")), "charge_id": _id(payment.get("charge")),
            "payment_intent_id": _id(payment.get("payment_intent")), "amount_paid": o.get("amount_paid") or 0,
            "currency": o.get("currency") or "usd", "status": o.get("status"),
            "paid_at": ts(transitions.get("paid_at"))}


def _invoice_item(o: dict[str, Any]) -> dict[str, Any]:
    return {"customer_id": _id(o.get("customer")), "invoice_id": _id(o.get("invoice")),
            "amount": o.get("amount") or 0, "currency": o.get("currency") or "usd"}


def _price(o: dict[str, Any]) -> dict[str, Any]:
    recurring = o.get("recurring") or {}
    return {"product_id": _id(o.get("product")), "currency": o.get("currency") or "usd",
            "unit_amount": o.get("unit_amount"), "type": o.get("type"), "interval": recurring.get("interval"),
            "interval_count": recurring.get("interval_count"), "active": bool(o.get("active", True))}


def _product(o: dict[str, Any]) -> dict[str, Any]:
    return {"name": o.get("name"), "active": bool(o.get("active", True))}


def _subscription(o: dict[str, Any]) -> dict[str, Any]:
    return {"customer_id": _id(o.get("customer")), "status": o.get("status"), "currency": o.get("currency") or "usd",
            "start_date": ts(o.get("start_date")), "trial_end": ts(o.get("trial_end")),
            "cancel_at": ts(o.get("cancel_at")), "canceled_at": ts(o.get("canceled_at")),
            "ended_at": ts(o.get("ended_at"))}


def _subscription_item(o: dict[str, Any]) -> dict[str, Any]:
    return {"subscription_id": _id(o.get("subscription")), "price_id": _id(o.get("price")),
            "quantity": o.get("quantity") or 0}


def _schedule(o: dict[str, Any]) -> dict[str, Any]:
    return {"customer_id": _id(o.get("customer")), "subscription_id": _id(o.get("subscription")),
            "status": o.get("status")}


def _customer_balance_transaction(o: dict[str, Any]) -> dict[str, Any]:
    return {"customer_id": _id(o.get("customer")), "invoice_id": _id(o.get("invoice")),
            "amount": o.get("amount") or 0, "currency": o.get("currency") or "usd", "type": o.get("type"),
            "plan_key": plan_key(o.get("metadata"), PLAN_CREDIT_KINDS)}


def _balance_transaction(o: dict[str, Any]) -> dict[str, Any]:
    return {"source_id": _id(o.get("source")), "amount": o.get("amount") or 0, "fee": o.get("fee") or 0,
            "net": o.get("net") or 0, "currency": o.get("currency") or "usd", "type": o.get("type"),
            "reporting_category": o.get("reporting_category")}


def _refund(o: dict[str, Any]) -> dict[str, Any]:
    return {"charge_id": _id(o.get("charge")), "payment_intent_id": _id(o.get("payment_intent")),
            "amount": o.get("amount") or 0, "currency": o.get("currency") or "usd", "status": o.get("status")}


def _credit_note(o: dict[str, Any]) -> dict[str, Any]:
    return {"invoice_id": _id(o.get("invoice")), "customer_id": _id(o.get("customer")),
            "total": o.get("total") or o.get("amount") or 0, "currency": o.get("currency") or "usd",
            "status": o.get("status"), "total_excluding_tax": o.get("total_excluding_tax")}


def _dispute_lost_at(o: dict[str, Any]) -> datetime | None:
    if o.get("status") != "lost":
        return None
    times = [int(t["created"]) for t in o.get("balance_transactions") or []
             if isinstance(t, dict) and t.get("created")]
    return ts(max(times)) if times else None


def _dispute(o: dict[str, Any]) -> dict[str, Any]:
    return {"charge_id": _id(o.get("charge")), "amount": o.get("amount") or 0,
            "currency": o.get("currency") or "usd", "status": o.get("status"), "lost_at": _dispute_lost_at(o)}


Extractor = Callable[[dict[str, Any]], dict[str, Any]]

# Stripe's `object` field → (table, typed columns). The one map the sync and the webhooks use.
TABLES: dict[str, tuple[type[StripeObject], Extractor]] = {
    "customer": (StripeCustomer, _customer),
    "charge": (StripeCharge, _charge),
    "invoice": (StripeInvoice, _invoice),
    "line_item": (StripeInvoiceLine, _line),
    "invoiceitem": (StripeInvoiceItem, _invoice_item),
    "invoice_payment": (StripeInvoicePayment, _invoice_payment),
    "price": (StripePrice, _price),
    "product": (StripeProduct, _product),
    "subscription": (StripeSubscription, _subscription),
    "subscription_item": (StripeSubscriptionItem, _subscription_item),
    "subscription_schedule": (StripeSubscriptionSchedule, _schedule),
    "customer_balance_transaction": (StripeCustomerBalanceTransaction, _customer_balance_transaction),
    "balance_transaction": (StripeBalanceTransaction, _balance_transaction),
    "refund": (StripeRefund, _refund),
    "credit_note": (StripeCreditNote, _credit_note),
    "dispute": (StripeDispute, _dispute),
}


def created_of(obj: Mapping[str, Any]) -> int | None:
    """When Stripe made the object (unix seconds). Invoice items carry `date`, not `created`."""
    value = obj.get("created")
    if value is None and obj.get("object") == "invoiceitem":
        value = obj.get("date")
    return None if value is None or value == "" else int(value)


def row_for(obj: dict[str, Any], *, event_created: int | None = None, **extra: Any) -> dict[str, Any]:
    model, extract = TABLES[obj["object"]]
    row = {"id": obj["id"], "created": ts(created_of(obj)), "raw": obj, "synced_at": utcnow(),
           "deleted_at": ts(event_created) if obj.get("deleted") else None, **extract(obj), **extra}
    if event_created is not None:
        row["event_created"] = event_created
    return row


def _constant_default(column: Any) -> Any:
    default = column.default
    return default.arg if default is not None and not callable(default.arg) else None


def upsert(session: Session, model: type[StripeObject], rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert or update rows by id in one statement (SQLite and PostgreSQL `ON CONFLICT`).

    A row carrying `event_created` replaces a stored one only if that is not older than the
    stored row's own event time; list results (no event time) always replace."""
    rows_in = [dict(r) for r in rows]
    if not rows_in:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    table = model.__table__  # type: ignore[attr-defined]
    # Every row of one statement must have the same keys: a missing one gets the column's
    # constant default (or None). Rows of one page mostly have every key already.
    keys = sorted({k for r in rows_in for k in r})
    filled = rows_in
    if any(len(r) != len(keys) for r in rows_in):
        defaults = {k: _constant_default(table.c[k]) for k in keys}
        filled = [r if len(r) == len(keys) else {k: r.get(k, defaults[k]) for k in keys} for r in rows_in]
    for r in filled:
        if r.get("synced_at") is None:
            r["synced_at"] = utcnow()
    # One statement executed for many parameter sets: compiled once and cached by SQLAlchemy
    # (`.values(rows)` made a new statement with a bind parameter per value, compiled anew for
    # every page), sent as sqlite3's executemany or psycopg's batched multi-row inserts.
    stmt = insert(table)
    updates = {k: stmt.excluded[k] for k in keys if k not in ("id",)}
    # Soft-deleted rows stay deleted unless the object itself says otherwise.
    if "deleted_at" not in keys:
        updates.pop("deleted_at", None)
    newer = (table.c.event_created.is_(None)) | (stmt.excluded.event_created.is_(None)) | (
        stmt.excluded.event_created >= table.c.event_created)
    if "event_created" in keys:
        updates["event_created"] = stmt.excluded.event_created
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_=updates, where=newer)
    else:
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_=updates)
    session.execute(stmt, filled)
    transaction = session.get_transaction()
    if transaction is None:
        touch(session)
    else:
        session.info[_TOUCH_PENDING] = transaction
    return len(filled)


# session.info key: the transaction whose upserts still have to bump the warehouse version.
_TOUCH_PENDING = "warehouse_version_bump_pending"


@event.listens_for(Session, "before_commit")
def _touch_before_commit(session: Session) -> None:
    """The warehouse version bumped once per transaction that upserted, as its last statement.

    Once is enough for the caches keyed on it (a page of invoices upserts three tables, a sync
    commits a thousand pages). Last, because the bump locks the one version row until the commit:
    bumped at the first upsert, PostgreSQL made every other worker's page wait for the rest of
    that page (its children, its checkpoint), and the sync's eight workers wrote one at a time."""
    pending = session.info.pop(_TOUCH_PENDING, None)
    if pending is not None and pending is session.get_transaction():
        touch(session)


WAREHOUSE_VERSION = "warehouse_version"


def touch(session: Session) -> None:
    """Bump the warehouse version: report caches key on it, so any write invalidates them.
    The row is created by migration 0005_revenue_indexes."""
    session.execute(sql_update(RevenueSyncCursor).where(RevenueSyncCursor.name == WAREHOUSE_VERSION)
                    .values(value=RevenueSyncCursor.value + 1))


def warehouse_version(session: Session) -> int:
    row = session.get(RevenueSyncCursor, WAREHOUSE_VERSION)
    return 0 if row is None else row.value
