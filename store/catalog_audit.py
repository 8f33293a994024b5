"""The catalog's audit trail: changes made outside a plan row (bespoke prices, price moves,
discounts, startup-plan and free-trial timers, the scheduled catalog check), who made them, when,
and on which Stripe objects. A change made from a plan row is also on that row's timeline; this
table holds every change, so the customer page can show them whatever door they came through.

Append-only: rows are never updated or deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import unit_of_work
from store.models import Base, utcnow

ID = String(255)


class CatalogAuditEntry(Base):
    __tablename__ = "catalog_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(254))  # an email, or "workflow" / "revenue-sync" / "stripe-webhook"
    action: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(ID)
    subscription_id: Mapped[str | None] = mapped_column(ID)
    price_id: Mapped[str | None] = mapped_column(ID)
    # The plan row it was made from, if any; no foreign key, so the trail outlives a deleted row.
    plan_id: Mapped[int | None]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        Index("ix_catalog_audit_customer_id", "customer_id"),
        Index("ix_catalog_audit_subscription_id", "subscription_id"),
        Index("ix_catalog_audit_action_at", "action", "at"),
    )

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "actor": self.actor, "action": self.action,
                "customer": self.customer_id, "subscription": self.subscription_id, "price": self.price_id,
                "plan_id": self.plan_id, "detail": self.detail}


def add_entry(session: Session, actor: str, action: str, *, customer: str | None = None,
              subscription: str | None = None, price: str | None = None, plan_id: int | None = None,
              detail: dict[str, Any] | None = None) -> CatalogAuditEntry:
    entry = CatalogAuditEntry(actor=actor, action=action, customer_id=customer, subscription_id=subscription,
                              price_id=price, plan_id=plan_id, detail=detail or {})
    session.add(entry)
    session.flush()
    return entry


def record(database_url: str, actor: str, action: str, **fields: Any) -> None:
    """One audit row in its own transaction (the Stripe change it records is already made)."""
    with unit_of_work(database_url) as session:
        add_entry(session, actor, action, **fields)


def for_customer(session: Session, customer_id: str, subscription_ids: list[str],
                 limit: int = 200) -> list[CatalogAuditEntry]:
    """A customer's changes, newest first: those naming it, and those on its subscriptions."""
    where = CatalogAuditEntry.customer_id == customer_id
    if subscription_ids:
        where = or_(where, CatalogAuditEntry.subscription_id.in_(subscription_ids))
    return list(session.scalars(select(CatalogAuditEntry).where(where)
                                .order_by(CatalogAuditEntry.at.desc(), CatalogAuditEntry.id.desc()).limit(limit)))


def newest(session: Session, action: str) -> CatalogAuditEntry | None:
    return session.scalars(select(CatalogAuditEntry).where(CatalogAuditEntry.action == action)
                           .order_by(CatalogAuditEntry.at.desc(), CatalogAuditEntry.id.desc()).limit(1)).first()
