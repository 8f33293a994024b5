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

from domain.pandadoc_mapping import FieldMap, load_field_map, map_details
from domain.plan_input import INTAKE_FAILURE_KEY
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
        field_map = load_field_map(self._settings.pandadoc_field_map)
        existing = self._existing(row.document_id)
        if existing is not None:
            return self._completed_again(existing, row, field_map)
        data = map_details(row.details, field_map)
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

    def _completed_again(self, existing: RowResult, row: DocumentRow, field_map: FieldMap) -> RowResult:
        """A document that already has a row: a retry of the same version changes nothing; a new
        signed version (edited, completed again) is compared with the one the row was read from,
        and any difference is noted on the row for a person (issue 17 #6)."""
        stored = self._stored_details(row.document_id)
        if stored is None or _version(stored) == _version(row.details) or INTAKE_FAILURE_KEY in row.details:
            return existing
        # A row made from stand-in details (the first intake failed) keeps the document beside them.
        original = stored.get("original_details")
        before = map_details(original if isinstance(original, dict) else stored, field_map)
        after = map_details(row.details, field_map)
        note = self._plans.document_changed(row.document_id, before, after, details=row.details)
        found = self._existing(row.document_id)
        assert found is not None  # the row was there a moment ago and rows are never deleted
        return RowResult(found.plan_id, False, found.state,
                         {**found.errors, **({"document_change": note["message"]} if note else {})})

    def _stored_details(self, document_id: str) -> dict[str, Any] | None:
        with unit_of_work(self._settings.database_url) as session:
            details = session.scalar(select(Plan.pandadoc_details).where(Plan.pandadoc_id == document_id))
            return details if isinstance(details, dict) else None

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


def _version(details: dict[str, Any]) -> str:
    """Which signed version of a document the details are: PandaDoc changes `date_modified` when a
    completed document is edited and completed again."""
    return f"{details.get('date_modified') or ''}|{details.get('date_completed') or ''}"


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
