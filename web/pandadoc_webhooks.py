"""`POST /webhooks/pandadoc?signature=HEX`: PandaDoc's completion webhooks (SPEC §8).

Order matters: verify the signature (401, nothing stored), parse (400), store the raw delivery,
then start one intake workflow per completed document and answer 200 — well inside PandaDoc's 20 s.
Deliveries are at least once: a repeated `X-PandaDoc-Webhook-Event-Id`, a repeated
(document, status, version) and the intake workflow id each stop a second row. A document edited
after it was completed and completed again is a new version (a new `date_modified`): it gets an
intake of its own, which notes the difference on the row (issue 17 #6), never ignored.
A failure to reach Temporal answers 503 so PandaDoc delivers again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from domain.pandadoc_mapping import MalformedDelivery, completed_document_ids, read_delivery
from observability.metrics import observe_webhook
from store.models import Claim, InboundEvent, utcnow
from web.context import db, settings, temporal

bp = Blueprint("pandadoc_webhooks", __name__)
log = logging.getLogger(__name__)

EVENT_ID_HEADER = "X-PandaDoc-Webhook-Event-Id"
EVENT_SCOPE = "pandadoc-event"
DOCUMENT_SCOPE = "pandadoc-document"
START_TIMEOUT_SECONDS = 10.0


def signature_ok(body: bytes, given: str, key: str) -> bool:
    if not key or not given:
        return False
    expected = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


# A machine-to-machine endpoint: the HMAC signature is its authentication, not a user role.
@bp.post("/webhooks/pandadoc")
@observe_webhook("pandadoc")
def receive() -> Any:
    body = request.get_data(cache=False)
    event_id = request.headers.get(EVENT_ID_HEADER) or None
    if not signature_ok(body, request.args.get("signature", ""), settings().pandadoc_webhook_key):
        log.warning("PandaDoc webhook refused: bad or missing signature (event id %s, %d bytes, from %s).",
                    event_id, len(body), request.remote_addr)
        return jsonify({"error": "The signature does not match the body; nothing was stored."}), 401
    try:
        payload = json.loads(body)
        events = read_delivery(payload)
    except (ValueError, MalformedDelivery) as exc:
        log.warning("PandaDoc webhook refused: malformed body (event id %s): %s", event_id, exc)
        return jsonify({"error": f"Malformed PandaDoc delivery: {exc}"}), 400

    headers = {k: v for k, v in request.headers.items() if k.lower().startswith(("x-pandadoc", "content-type",
                                                                                  "user-agent"))}
    with db() as session:
        inbound = InboundEvent(source="pandadoc", event_id=event_id, body=body.decode("utf-8", "replace"),
                               event_type=",".join(sorted({e.event for e in events}))[:128], headers=headers)
        session.add(inbound)
        session.flush()
        inbound_id = inbound.id
        seen = event_id is not None and session.scalar(
            select(Claim.id).where(Claim.scope == EVENT_SCOPE, Claim.key == event_id)) is not None
    if seen:
        _finish(inbound_id, "duplicate")
        return jsonify({"status": "duplicate", "event_id": event_id}), 200

    documents = completed_document_ids(events)
    versions = _versions(payload)
    started: list[str] = []
    changed: list[str] = []
    try:
        for document_id in documents:
            version = versions.get(document_id, "")
            version_key = f"{document_id}:document.completed@{version}"[:255]
            if version and _claimed(DOCUMENT_SCOPE, version_key):
                continue  # this signed version was taken in already
            first_key = f"{document_id}:document.completed"
            if not _claimed(DOCUMENT_SCOPE, first_key):
                if _start_intake(document_id):
                    started.append(document_id)
            elif version and _start_intake(document_id, version):
                changed.append(document_id)
            # Claimed only after the start succeeded: a failed start must be retried by PandaDoc.
            _claim(DOCUMENT_SCOPE, first_key, str(inbound_id))
            if version:
                _claim(DOCUMENT_SCOPE, version_key, str(inbound_id))
    except Exception as exc:  # noqa: BLE001 - any failure to hand over means "deliver again"
        log.exception("PandaDoc webhook %s: could not start intake; PandaDoc will retry.", event_id)
        _finish(inbound_id, "failed", error=f"{type(exc).__name__}: {exc}")
        return jsonify({"error": "Could not start intake now; deliver again later."}), 503
    if event_id is not None:
        _claim(EVENT_SCOPE, event_id, str(inbound_id))
    _finish(inbound_id, "processed" if documents else "ignored")
    return jsonify({"status": "ok", "documents": documents, "started": started, "changed": changed}), 200


def _versions(payload: Any) -> dict[str, str]:
    """Document id → its `date_modified` in this delivery (which signed version completed)."""
    found: dict[str, str] = {}
    for item in payload if isinstance(payload, list) else []:
        data = item.get("data") if isinstance(item, dict) else None
        if isinstance(data, dict) and data.get("id") and isinstance(data.get("date_modified"), str):
            found.setdefault(str(data["id"]), data["date_modified"].strip()[:64])
    return found


def _start_intake(document_id: str, version: str | None = None) -> bool:
    """Start `intake-{document_id}` (or, for a later signed version, an intake named after the
    version); False when that intake already exists or ran. A failed intake may run again."""
    from temporalio.client import Client
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from workflows.intake import IntakeInput, PandaDocIntake, intake_workflow_id

    queue = settings().temporal_task_queue
    workflow_id = intake_workflow_id(document_id, version)
    origin = "webhook" if version is None else "completed_again"

    async def start(client: Client) -> bool:
        try:
            await client.start_workflow(
                PandaDocIntake.run, IntakeInput(document_id, origin), id=workflow_id,
                task_queue=queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                # A failed intake (PandaDoc unreachable for an hour) is tried again; one that ran is not.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
        except WorkflowAlreadyStartedError:
            return False
        return True

    return temporal().run(start, timeout=START_TIMEOUT_SECONDS)


def _claimed(scope: str, key: str) -> bool:
    with db() as session:
        return session.scalar(select(Claim.id).where(Claim.scope == scope, Claim.key == key)) is not None


def _claim(scope: str, key: str, value: str) -> None:
    try:
        with db() as session:
            session.add(Claim(scope=scope, key=key[:255], value=value))
    except IntegrityError:
        pass  # a concurrent delivery claimed it first: the same outcome


def _finish(inbound_id: int, status: str, *, error: str | None = None) -> None:
    with db() as session:
        inbound = session.get(InboundEvent, inbound_id)
        if inbound is not None:
            inbound.status, inbound.error, inbound.processed_at = status, error, utcnow()
