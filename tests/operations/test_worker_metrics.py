"""The worker serves the Temporal SDK's own metrics, and ours beside them, at WORKER_METRICS_ADDRESS.

The Temporal runtime is process-wide, so the worker side runs in a child process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from settings import PROJECT_ROOT, Settings

CHILD = """
import asyncio, json, os, sys, urllib.request
from settings import Settings
from observability.metrics import install_worker_metrics
from activities.stripe_api import stripe_client

settings = Settings.load()
assert install_worker_metrics(settings)

async def main():
    import worker
    from temporal_client import connect
    client = await connect(settings)
    running = worker.build_worker(client, settings)
    async with running:
        await client.count_workflows()
        stripe_client(settings).v1.customers.create({"email": "worker-metrics@example.com"})
        await asyncio.sleep(1.5)
        body = urllib.request.urlopen(f"http://{settings.worker_metrics_address}/metrics", timeout=10).read()
    print(json.dumps(body.decode()), flush=True)

asyncio.run(main())
# The Temporal runtime's Rust threads have been seen to crash the interpreter's own teardown now and
# then (SIGSEGV after everything ran); what this test checks is already printed.
os._exit(0)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_worker_exports_temporal_and_revops_metrics(settings: Settings, dev_env: WorkflowEnvironment,
                                                    stripe_sandbox: Any) -> None:
    address = f"127.0.0.1:{_free_port()}"
    cfg = replace(settings, worker_metrics_address=address, stripe_api_base=stripe_sandbox.url,
                  temporal_address=dev_env.client.service_client.config.target_host,
                  temporal_task_queue="worker-metrics-test")
    env = {**os.environ, **cfg.as_env()}
    result = subprocess.run([sys.executable, "-c", CHILD], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    text = json.loads(result.stdout.strip().splitlines()[-1])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert any(name.startswith("temporal_") for name in families), sorted(families)
    requests = families["revops_stripe_requests"]
    assert requests.type == "counter"
    [sample] = [s for s in requests.samples if s.labels.get("endpoint") == "/v1/customers"]
    assert sample.name == "revops_stripe_requests_total"  # the same name /metrics uses in the web app
    assert (sample.labels["method"], sample.labels["status"], sample.value) == ("POST", "200", 1)
    durations = families["revops_stripe_request_duration_seconds"]
    buckets = {s.labels["le"] for s in durations.samples if s.name.endswith("_bucket")}
    assert {"0.05", "30", "+Inf"} <= buckets  # our seconds buckets, not the runtime's millisecond ones


def test_no_address_no_metrics_port(settings: Settings) -> None:
    from observability.metrics import install_worker_metrics

    assert settings.worker_metrics_address == ""
    assert install_worker_metrics(settings) is False
