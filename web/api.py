"""The JSON API of SPEC §9: plans, their actions and timelines, for scripts.

Bearer tokens (`Authorization: Bearer …`): viewers read, operators create, edit and click.
Each route turns the request into one call of `plans.service.PlanService` (the same door as the
web table's forms and buttons) and its refusals into status codes. Errors are JSON here, always
(`web.errors`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from plans.service import PlanRejected
from web.auth import current_principal, requires
from web.context import plans

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_PAGE = 500


def _rejected(err: PlanRejected) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": err.message}
    if err.errors or err.warnings:
        # Warnings sit beside errors in `errors` (a client fixes or confirms each named field),
        # and on their own in `warnings` (confirm them with `accept_warnings`).
        body["errors"] = {**err.warnings, **err.errors}
    if err.warnings:
        body["warnings"] = err.warnings
    if err.plan is not None:
        body["plan"] = err.plan
    return jsonify(body), err.status


def _json_body() -> dict[str, Any] | None:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else None


def _actor() -> str:
    principal = current_principal()
    assert principal is not None  # guaranteed by @requires
    return principal.email


@bp.get("/plans")
@requires("viewer")
def list_plans() -> Any:
    try:
        limit = min(int(request.args.get("limit", 100)), MAX_PAGE)
        offset = max(int(request.args.get("offset", 0)), 0)
    except ValueError:
        return jsonify({"error": "limit and offset must be whole numbers."}), 422
    if limit < 1:
        return jsonify({"error": f"limit must be 1 or more, not {limit}."}), 422
    rows, total = plans().list_page(state=request.args.get("state") or None, limit=limit, offset=offset)
    return jsonify({"plans": rows, "total": total, "limit": limit, "offset": offset})


@bp.post("/plans")
@requires("operator")
def create_plan() -> Any:
    data = _json_body()
    if data is None:
        return jsonify({"error": "Send the plan as a JSON object."}), 422
    try:
        return jsonify(plans().create(data, actor=_actor())), 201
    except PlanRejected as err:
        return _rejected(err)


@bp.get("/plans/<int:plan_id>")
@requires("viewer")
def get_plan(plan_id: int) -> Any:
    try:
        return jsonify(plans().get(plan_id))
    except PlanRejected as err:
        return _rejected(err)


@bp.patch("/plans/<int:plan_id>")
@requires("operator")
def patch_plan(plan_id: int) -> Any:
    data = _json_body()
    if data is None:
        return jsonify({"error": "Send the changed fields as a JSON object."}), 422
    try:
        return jsonify(plans().edit(plan_id, data, actor=_actor()))
    except PlanRejected as err:
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
        return jsonify(plans().perform_action(plan_id, action, principal, params))
    except PlanRejected as err:
        return _rejected(err)


@bp.get("/plans/<int:plan_id>/timeline")
@requires("viewer")
def timeline(plan_id: int) -> Any:
    try:
        return jsonify({"plan_id": plan_id, "timeline": plans().timeline(plan_id)})
    except PlanRejected as err:
        return _rejected(err)


@bp.post("/plans/<int:plan_id>/document-change")
@requires("operator")
def settle_document_change(plan_id: int) -> Any:
    """The signed document changed (issue 17 #6): `{"decision": "apply"}` takes its new values
    (checked like any edit), `{"decision": "keep"}` keeps the row and drops the note."""
    data = _json_body()
    decision = (data or {}).get("decision")
    if decision not in ("apply", "keep"):
        message = f"Send {{\"decision\": \"apply\"}} or {{\"decision\": \"keep\"}}, not {decision!r}."
        return jsonify({"error": message}), 422
    try:
        return jsonify(plans().settle_document_change(plan_id, apply=decision == "apply", actor=_actor()))
    except PlanRejected as err:
        return _rejected(err)
