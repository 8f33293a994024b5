"""`/healthz`: 200 when the database and Temporal answer, 503 naming what is down."""

from __future__ import annotations

import socket
from dataclasses import replace

from temporalio.testing import WorkflowEnvironment

from settings import Settings
from temporal_client import connect
from web import create_app
from web.temporal_bridge import TemporalBridge


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthz_ok_when_database_and_temporal_answer(settings: Settings, dev_env: WorkflowEnvironment) -> None:
    live = replace(settings, temporal_address=dev_env.client.service_client.config.target_host)
    bridge = TemporalBridge(lambda: connect(live))
    try:
        response = create_app(live, temporal=bridge).test_client().get("/healthz")
        assert response.status_code == 200
        assert response.get_json() == {"status": "ok", "down": [], "checks": {"database": "ok", "temporal": "ok"}}
    finally:
        bridge.close()


def test_healthz_503_names_temporal_when_it_is_down(settings: Settings) -> None:
    down = replace(settings, temporal_address=f"127.0.0.1:{_closed_port()}")
    bridge = TemporalBridge(lambda: connect(down))
    try:
        response = create_app(down, temporal=bridge).test_client().get("/healthz")
    finally:
        bridge.close()
    assert response.status_code == 503
    body = response.get_json()
    assert body["down"] == ["temporal"]
    assert body["checks"]["database"] == "ok"


def test_healthz_503_names_the_database_when_it_is_down(settings: Settings, tmp_path) -> None:
    broken = replace(settings, database_url=f"sqlite:///{tmp_path}/no/such/dir/../../x/{'y' * 5}/db.sqlite",
                     temporal_address=f"127.0.0.1:{_closed_port()}")
    (tmp_path / "no").write_text("a file where a directory should be")
    bridge = TemporalBridge(lambda: connect(broken))
    try:
        response = create_app(broken, temporal=bridge).test_client().get("/healthz")
    finally:
        bridge.close()
    assert response.status_code == 503
    assert set(response.get_json()["down"]) == {"database", "temporal"}
