"""Intake activities: turn a PandaDoc document into a plan row, once.

The row is made by `plans.service` (the one door into plan rows: the same validation and
uniqueness as the API and the table), keyed by its PandaDoc id, so a retried activity, a replayed
webhook, the daily reconcile or a CSV import of the same document never makes a second row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from temporalio import activity

from domain.pandadoc_mapping import load_field_map, map_details
from plans.service import DocumentTaken, Keep, PlanService
from settings import Settings
from store.db import unit_of_work
from store.models import Plan


@dataclass
class DocumentRow:
    document_id: str
    details: dict[str, Any]
    origin: str = "webhook"  # webhook | reconcile


@dataclass
class RowResult:
    plan_id: int
    created: bool
    state: str
    errors: dict[str, Any] = field(default_factory=dict)


class IntakeActivities:
    def __init__(self, settings: Settings, plans: PlanService | None = None) -> None:
        self._settings = settings
        self._plans = plans or PlanService.for_settings(settings)

    @activity.defn(name="intake.create_row_from_document")
    def create_row_from_document(self, row: DocumentRow) -> RowResult:
        existing = self._existing(row.document_id)
        if existing is not None:
            return existing
        data = map_details(row.details, load_field_map(self._settings.pandadoc_field_map))
        data["pandadoc_id"] = row.document_id
        try:
            # Keep.EVERYTHING: a signed document is never dropped; a row that does not validate
            # waits in "needs review" with its errors, keyed on the document all the same.
            plan = self._plans.create(data, actor="pandadoc", source="pandadoc", keep=Keep.EVERYTHING,
                                      pandadoc_details=row.details)
        except DocumentTaken:
            # Another path (a CSV import, a concurrent retry) stored the document first.
            found = self._existing(row.document_id)
            if found is None:
                raise
            return found
        return RowResult(int(plan["id"]), True, str(plan["state"]), _visible(plan["errors"]))

    @activity.defn(name="intake.documents_without_rows")
    def documents_without_rows(self, document_ids: list[str]) -> list[str]:
        """The ids, in order, that no row has yet (what the reconcile must take in)."""
        if not document_ids:
            return []
        with unit_of_work(self._settings.database_url) as session:
            have = set(session.scalars(select(Plan.pandadoc_id).where(Plan.pandadoc_id.in_(document_ids))))
        return [doc for doc in document_ids if doc not in have]

    def _existing(self, document_id: str) -> RowResult | None:
        with unit_of_work(self._settings.database_url) as session:
            plan = session.scalar(select(Plan).where(Plan.pandadoc_id == document_id))
            if plan is None:
                return None
            return RowResult(plan.id, False, plan.state, _visible(plan.errors))


def _visible(errors: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (errors or {}).items() if not k.startswith("_")}


def build(settings: Settings) -> list[Callable[..., Any]]:
    from activities.pandadoc import PandaDocActivities
    from activities.sheets import SheetMirrorActivities

    pandadoc = PandaDocActivities(settings)
    # The worker's composition root for intake: rows are made through the plan service, with no
    # Temporal bridge (intake never clicks a button; the plan workflow starts on the first click).
    intake = IntakeActivities(settings, PlanService.for_settings(settings))
    sheets = SheetMirrorActivities(settings)
    return [
        pandadoc.fetch_document_details,
        pandadoc.list_completed_documents,
        intake.create_row_from_document,
        intake.documents_without_rows,
        sheets.mirror_changed_rows,
    ]
