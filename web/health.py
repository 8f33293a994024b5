"""`/healthz` for load balancers and `make dev`; `/metrics` for Prometheus."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from observability.metrics import exposition
from web.context import db, settings, temporal

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    try:
        with db() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "down"; say which
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        temporal().run(lambda client: client.service_client.check_health(), timeout=5)
        checks["temporal"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["temporal"] = f"down: {type(exc).__name__}"
    down = [name for name, state in checks.items() if state != "ok"]
    status = 503 if down else 200
    return jsonify({"status": "down" if down else "ok", "down": down, "checks": checks}), status


@bp.get("/metrics")
def metrics() -> Response:
    return Response(exposition(settings().database_url), mimetype=CONTENT_TYPE_LATEST)
