"""`revops dev` (what `make dev` runs): healthy within 60 s, Web UI up, SIGTERM leaves nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from settings import PROJECT_ROOT

pytestmark = pytest.mark.slow


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.fixture
def dev_env_vars(tmp_path: Path) -> dict[str, str]:
    web, temporal, ui, stripe, pandadoc = _free_ports(5)
    return {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "STRIPE_API_BASE"}},
        "REVOPS_VAR_DIR": str(tmp_path / "var"),
        "WEB_PORT": str(web), "DEV_TEMPORAL_PORT": str(temporal), "DEV_TEMPORAL_UI_PORT": str(ui),
        "DEV_STRIPE_PORT": str(stripe), "DEV_PANDADOC_PORT": str(pandadoc),
    }


@pytest.mark.timeout(150)
def test_dev_stack_starts_healthy_and_sigterm_stops_everything(dev_env_vars: dict[str, str]) -> None:
    web, ui = dev_env_vars["WEB_PORT"], dev_env_vars["DEV_TEMPORAL_UI_PORT"]
    proc = subprocess.Popen([sys.executable, "-c", "from cli import main; main()", "dev"], env=dev_env_vars,
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        while _status(f"http://127.0.0.1:{web}/healthz") != 200:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() - started < 60, "healthz did not answer 200 within 60 s"
            time.sleep(0.5)
        assert _status(f"http://127.0.0.1:{ui}/") == 200
        env_file = Path(dev_env_vars["REVOPS_VAR_DIR"]) / "dev.env"
        written = env_file.read_text()
        assert "STRIPE_WEBHOOK_SECRET=whsec_" in written and "SECRET_KEY=" in written
        children = _descendants(proc.pid)
        assert children, "the stack should have started child processes"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    time.sleep(0.5)
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
             and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert alive == [], f"processes left running after SIGTERM: {alive}"
    assert _status(f"http://127.0.0.1:{web}/healthz") == 0


def test_a_taken_port_is_one_clear_line(dev_env_vars: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(dev_env_vars["WEB_PORT"])))
        holder.listen()
        result = subprocess.run([sys.executable, "-c", "from cli import main; main()", "dev"], env=dev_env_vars,
                                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"port {dev_env_vars['WEB_PORT']} (the web app) is already in use" in result.stderr
