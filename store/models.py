"""The operational tables: plan rows, their audit timeline, users, API tokens, browser sessions,
failed sign-ins, the webhook inbox.

Money columns are integer minor units beside a currency; see `domain.money`.
The warehouse tables of the revenue sync live in `store.warehouse`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Plan(Base):
    """One contract: a row of the Annual Plan Table (SPEC §4)."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    pandadoc_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Input fields are NULL while they are in error on a needs-review row: a field that failed is
    # empty until a person fills it, never a column default (a failed currency is not "usd", a
    # failed term not 12 months). `errors["_failed"]` names them. Any row in another state has them.
    company_name: Mapped[str | None] = mapped_column(String(200), default="")
    customer_email: Mapped[str | None] = mapped_column(String(254), default="")
    credit_amount: Mapped[int | None] = mapped_column(BigInteger, default=0)  # minor units
    discount: Mapped[Decimal | None] = mapped_column(Numeric(6, 3), default=Decimal(0))  # percent
    price: Mapped[int | None] = mapped_column(BigInteger, default=0)  # minor units, for the whole term
    currency: Mapped[str | None] = mapped_column(String(3), default="usd")
    start_date: Mapped[date | None] = mapped_column(Date)
    term_months: Mapped[int | None] = mapped_column(Integer, default=12)
    posthog_org_id: Mapped[str | None] = mapped_column(String(64))
    payment_schedule: Mapped[str | None] = mapped_column(String(16), default="upfront")
    credit_start: Mapped[str | None] = mapped_column(String(32), default="immediately")
    credit_release: Mapped[str | None] = mapped_column(String(32), default="all")
    payment_terms_days: Mapped[int | None] = mapped_column(Integer, default=30)
    products: Mapped[list[Any] | None] = mapped_column(default=list)
    stripe_customer_id_existing: Mapped[str | None] = mapped_column(String(64))

    # Written by the plan workflow's activities (its projection).
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64))
    invoice_id: Mapped[str | None] = mapped_column(String(64))
    subscription_schedule_id: Mapped[str | None] = mapped_column(String(64))
    monthly_price_id: Mapped[str | None] = mapped_column(String(64))
    subscription_id: Mapped[str | None] = mapped_column(String(64))
    credit_applied_at: Mapped[datetime | None]
    credit_scheduled_for: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(32), default="new", index=True)
    # What the workflow last told us: allowed actions and reasons, checks, step errors.
    workflow_view: Mapped[dict[str, Any]] = mapped_column(default=dict)

    # Input problems: field → message. A row with errors is in "needs_review".
    errors: Mapped[dict[str, Any]] = mapped_column(default=dict)
    warnings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(16), default="manual")  # manual | pandadoc | csv
    pandadoc_details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The signed order form changed after the row was made (edited and completed again): what
    # changed, old → new, until a person applies or dismisses it. Never applied by itself.
    document_change: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)

    audit: Mapped[list[AuditEntry]] = relationship(back_populates="plan", order_by="AuditEntry.id")

    @property
    def workflow_id(self) -> str:
        return f"plan-{self.id}"

    __table_args__ = (
        Index("ix_plans_company_name", "company_name"),
        Index("ix_plans_customer_email", "customer_email"),
    )


class AuditEntry(Base):
    """Append-only timeline of a plan: who did what, when, with what input and result."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(254))  # an email, "workflow", "pandadoc", "stripe"
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | rejected | failed | info
    input: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)  # Stripe ids, dates, links
    error: Mapped[str | None] = mapped_column(Text)
    # Idempotency of the projection: an activity retried after a crash writes its entry once.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)

    plan: Mapped[Plan] = relationship(back_populates="audit")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # viewer | operator | admin
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")


class ApiToken(Base):
    """Bearer tokens for the JSON API. Only a SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in the admin page to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class WebSession(Base):
    """A signed-in browser session. The cookie carries only its random token (stored here as a
    SHA-256), so logging out, an admin, or deactivating the user ends it even for a copied cookie."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    address: Mapped[str | None] = mapped_column(String(64))  # where it signed in from, for the admin page

    user: Mapped[User] = relationship()


class LoginFailure(Base):
    """A failed sign-in. In the database, not in one process's memory, so every web process
    counts the same failures: per address and email, per email, and per address."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (
        Index("ix_login_failures_email_at", "email", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )


class InboundEvent(Base):
    """A raw webhook delivery, stored before anything else is done with it."""

    __tablename__ = "inbound_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # stripe | pandadoc
    event_id: Mapped[str | None] = mapped_column(String(255))
    event_type: Mapped[str | None] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="received")  # received|processed|duplicate|ignored|failed
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_inbound_events_source_event_id", "source", "event_id"),)


class Claim(Base):
    """Keys that must map to exactly one thing, claimed atomically (e.g. a PandaDoc document)."""

    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("scope", "key", name="uq_claims_scope_key"),)
