"""MRR pre-aggregates maintained by every revenue rebuild (being built: issue 13)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session


def refresh(session: Session, customer_ids: Iterable[str] | None) -> None:
    """Bring the MRR pre-aggregates up to date for these customers (None: everyone)."""
