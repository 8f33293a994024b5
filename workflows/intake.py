"""Intake workflows: one per PandaDoc document, the daily reconcile, and the Google Sheet mirror.

- `PandaDocIntake` (id `intake-{document_id}`): fetch the details (retried), create the row once.
  The id is the deduplication: the webhook, its retries and the reconcile all start this id.
  Every retry is bounded: a document that fails the same way every time still becomes a row, in
  needs review with the error, instead of an intake retrying forever with nothing in the table.
- `PandaDocReconcile` (a daily Schedule): documents completed recently without a row get an intake,
  for webhooks PandaDoc never delivered.
- `SheetMirror` (id `sheet-mirror`): a long-lived loop that upserts changed rows into the sheet in
  one batch per burst, paced under the Sheets write quota.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.intake import DocumentRow, IntakeActivities, RowResult
    from activities.pandadoc import PandaDocActivities
    from activities.sheets import MirrorPass, MirrorResult, SheetMirrorActivities
    from domain.pandadoc_mapping import failed_intake_details

# PandaDoc's API asks clients to back off; a document may also not be readable for a few seconds.
# Twenty attempts span about an hour (0.5 s doubling to 5 min); after that the intake fails where
# the Temporal UI shows it, and the daily reconcile starts it again (it reuses failed ids).
FETCH_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), backoff_coefficient=2.0,
                          maximum_interval=timedelta(minutes=5), maximum_attempts=20,
                          non_retryable_error_types=["DocumentNotFound"])
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# Errors a retry cannot cure: the same details fail the same way in code (a value of a type the
# mapping did not expect) or in the database (a value it refuses). Anything else (the database
# restarting, a lock) is retried, a bounded number of times (about four minutes).
DETERMINISTIC_ERRORS = ["TypeError", "AttributeError", "KeyError", "IndexError", "ValueError", "MoneyError",
                        "InvalidOperation", "RecursionError", "UnicodeError", "DataError", "StatementError"]
ROW_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                        maximum_interval=timedelta(minutes=1), maximum_attempts=8,
                        non_retryable_error_types=DETERMINISTIC_ERRORS)
# The fallback row carries only the document id and the error, so only an outage can stop it.
FALLBACK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=1), maximum_attempts=30)
SHEETS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                           maximum_interval=timedelta(minutes=2))
# The Sheets API allows 60 write requests per minute per user.
SHEETS_WRITES_PER_MINUTE = 60


def intake_workflow_id(document_id: str, version: str | None = None) -> str:
    """`intake-{document}`; a later signed version of the document (completed again after an
    edit, a new `date_modified`) has an intake of its own, named after the version."""
    if not version:
        return f"intake-{document_id}"
    stamp = "".join(ch for ch in version if ch.isalnum())[:40]
    return f"intake-{document_id}-v{stamp}"


@dataclass
class IntakeInput:
    document_id: str
    origin: str = "webhook"  # webhook | reconcile | manual | completed_again


@workflow.defn(name="PandaDocIntake")
class PandaDocIntake:
    @workflow.run
    async def run(self, job: IntakeInput) -> RowResult:
        details = await workflow.execute_activity_method(
            PandaDocActivities.fetch_document_details, job.document_id,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=FETCH_RETRY)
        try:
            return await workflow.execute_activity_method(
                IntakeActivities.create_row_from_document, DocumentRow(job.document_id, details, job.origin),
                start_to_close_timeout=timedelta(seconds=60), retry_policy=ROW_RETRY)
        except ActivityError as failure:
            reason = _reason(failure)
            workflow.logger.warning("Intake of %s failed (%s); storing a needs-review row.", job.document_id, reason)
        # The document is never lost: a row in needs review names it and says what went wrong,
        # with the original details kept on it for the person who fills it in.
        stand_in = failed_intake_details(job.document_id, details, reason)
        return await workflow.execute_activity_method(
            IntakeActivities.create_row_from_document, DocumentRow(job.document_id, stand_in, job.origin),
            start_to_close_timeout=timedelta(seconds=60), retry_policy=FALLBACK_RETRY)


def _reason(failure: ActivityError) -> str:
    cause = failure.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}" if cause.message else str(cause.type or "error")
    return str(cause or failure)


@dataclass
class ReconcileInput:
    lookback_hours: int = 72
    task_queue: str = ""  # empty: this workflow's own queue


@dataclass
class ReconcileResult:
    completed: int = 0
    started: list[str] = field(default_factory=list)


@workflow.defn(name="PandaDocReconcile")
class PandaDocReconcile:
    @workflow.run
    async def run(self, job: ReconcileInput) -> ReconcileResult:
        since = workflow.now() - timedelta(hours=job.lookback_hours)
        completed = await workflow.execute_activity_method(
            PandaDocActivities.list_completed_documents, since.isoformat(),
            start_to_close_timeout=timedelta(minutes=5), heartbeat_timeout=timedelta(minutes=1),
            retry_policy=FETCH_RETRY)
        missing = await workflow.execute_activity_method(
            IntakeActivities.documents_without_rows, completed,
            start_to_close_timeout=timedelta(minutes=1), retry_policy=DB_RETRY)
        result = ReconcileResult(completed=len(completed))
        for document_id in missing:
            try:
                # Abandoned: each intake lives on by itself; the same id as the webhook's start
                # means a late webhook or an intake already under way is not run twice.
                await workflow.start_child_workflow(
                    PandaDocIntake.run, IntakeInput(document_id, "reconcile"),
                    id=intake_workflow_id(document_id),
                    task_queue=job.task_queue or workflow.info().task_queue,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    # A failed intake (PandaDoc unreachable for an hour) is tried again; one that
                    # ran or is running is not.
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
            except WorkflowAlreadyStartedError:
                continue
            result.started.append(document_id)
        return result


@dataclass
class MirrorInput:
    sheet_key: str
    worksheet: str = ""
    poll_seconds: float = 15.0
    settle_seconds: float = 2.0
    max_rows: int = 1000
    passes_per_run: int = 500  # then continue-as-new, to keep the history short


@workflow.defn(name="SheetMirror")
class SheetMirror:
    def __init__(self) -> None:
        self._changed = False
        self.passes = 0
        self.writes = 0

    @workflow.signal
    def rows_changed(self) -> None:
        """Optional nudge after a change; without it the mirror notices within `poll_seconds`."""
        self._changed = True

    @workflow.query
    def stats(self) -> dict[str, int]:
        return {"passes": self.passes, "write_requests": self.writes}

    @workflow.run
    async def run(self, job: MirrorInput) -> None:
        for _ in range(job.passes_per_run):
            self._changed = False
            done: MirrorResult = await workflow.execute_activity_method(
                SheetMirrorActivities.mirror_changed_rows,
                MirrorPass(job.sheet_key, job.worksheet, job.max_rows, job.settle_seconds),
                start_to_close_timeout=timedelta(minutes=2), retry_policy=SHEETS_RETRY)
            self.passes += 1
            self.writes += done.write_requests
            # Pacing: each write request spends one second of the per-minute quota, so passes
            # never exceed 60 writes in any minute, however fast rows change.
            await workflow.sleep(timedelta(seconds=max(done.write_requests * 60 / SHEETS_WRITES_PER_MINUTE,
                                                       job.settle_seconds if done.more else 0, 0.001)))
            if done.more:
                continue
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=timedelta(seconds=job.poll_seconds))
            except TimeoutError:
                pass
        workflow.continue_as_new(job)


WORKFLOWS: list[type] = [PandaDocIntake, PandaDocReconcile, SheetMirror]
