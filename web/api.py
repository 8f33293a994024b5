"""The JSON API of SPEC §9: plans, their actions and timelines, for scripts.

Bearer tokens (`Authorization: Bearer …`): viewers read, operators create, edit and click.
Everything goes through `web.plan_service`, the same path as the web table's buttons.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import func, select

from store.models import AuditEntry, Plan
from store.plans import audit_to_json
from web.auth import current_principal, requires
from web.context import db
from web.plan_service import ActionRejected, create, edit, perform_action, plan_json

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_PAGE = 500


def _rejected(err: ActionRejected) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": err.message}
    if err.errors:
        body["errors"] = err.errors
    if err.plan is not None:
        body["plan"] = err.plan
    return jsonify(body), err.status


def _json_body() -> dict[str, Any] | None:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else None


@bp.get("/plans")
@requires("viewer")
def list_plans() -> Any:
    try:
        limit = min(int(request.args.get("limit", 100)), MAX_PAGE)
        offset = max(int(request.args.get("offset", 0)), 0)
    except ValueError:
        return jsonify({"error": "limit and offset must be whole numbers."}), 422
    query = select(Plan).order_by(Plan.id.desc())
    if state := request.args.get("state"):
        query = query.where(Plan.state == state)
    with db() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        plans = [plan_json(p) for p in session.scalars(query.limit(limit).offset(offset))]
    return jsonify({"plans": plans, "total": total, "limit": limit, "offset": offset})


@bp.post("/plans")
@requires("operator")
def create_plan() -> Any:
    data = _json_body()
    if data is None:
        return jsonify({"error": "Send the plan as a JSON object."}), 422
    principal = current_principal()
    assert principal is not None
    try:
        return jsonify(create(data, principal)), 201
    except ActionRejected as err:
        return _rejected(err)


@bp.get("/plans/<int:plan_id>")
@requires("viewer")
def get_plan(plan_id: int) -> Any:
    with db() as session:
        plan = session.get(Plan, plan_id)
        if plan is None:
            return jsonify({"error": f"There is no plan with id {plan_id}."}), 404
        return jsonify(plan_json(plan))


@bp.patch("/plans/<int:plan_id>")
@requires("operator")
def patch_plan(plan_id: int) -> Any:
    data = _json_body()
    if data is None:
        return jsonify({"error": "Send the changed fields as a JSON object."}), 422
    principal = current_principal()
    assert principal is not None
    try:
        return jsonify(edit(plan_id, data, principal))
    except ActionRejected as err:
        return _rejected(err)


@bp.post("/plans/<int:plan_id>/actions/<action>")
@requires("operator")
def act(plan_id: int, action: str) -> Any:
    principal = current_principal()
    assert principal is not None
    params = _json_body() if request.data else {}
    if params is None:
        return jsonify({"error": "Send action parameters as a JSON object (or no body)."}), 422
    try:
        return jsonify(perform_action(plan_id, action, principal, params))
    except ActionRejected as err:
        return _rejected(err)


@bp.get("/plans/<int:plan_id>/timeline")
@requires("viewer")
def timeline(plan_id: int) -> Any:
    with db() as session:
        if session.get(Plan, plan_id) is None:
            return jsonify({"error": f"There is no plan with id {plan_id}."}), 404
        entries = session.scalars(select(AuditEntry).where(AuditEntry.plan_id == plan_id).order_by(AuditEntry.id))
        return jsonify({"plan_id": plan_id, "timeline": [audit_to_json(e) for e in entries]})
