"""Revenue sync throughput: a full sync from a Stripe sandbox running in its own process.

    .venv/bin/python bench/sync_bench.py --objects 50000            # SQLite
    .venv/bin/python bench/sync_bench.py --objects 50000 --db postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/sync_bench.py --objects 20000 --profile  # cProfile of the unlimited run

The sandbox is seeded in this process with its bulk seeder (route handlers called in-process, so
50,000 objects take seconds), saved to a state file, and served by `revops sandbox stripe` in a
child process on a free port: the sync's threads and the emulator do not share a GIL, as with
Stripe itself. The sync writes into a fresh database (a new SQLite file, or a new database on the
PostgreSQL server of `--db`, dropped afterwards).

Two runs: `full_sync(settings, rate=None)` (limit off; goal >= 5,000 objects/s), then a run with a
rate limit low enough to bind (goal: the sandbox receives >= 90% of the configured requests/s,
counted by the sandbox itself between the sync's first and last request). The machine's load
average is printed beside the figures: run it alone on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import inspect
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from settings import Settings  # noqa: E402

GOAL_OBJECTS_PER_S = 5000.0
GOAL_RATE_RATIO = 0.90
# Objects the sync stores per bulk-seeded customer (the customer, its subscription and item,
# invoices and lines, invoice items, charges, refunds, disputes, credit notes, balance
# transactions...): measured, used to pick how many customers make `--objects`.
OBJECTS_PER_CUSTOMER = 20
# The rate-limited run lists these: invoices (payments expanded, lines stored) are the heaviest
# pages to store, so the pipeline behind the limiter is exercised. Not customers: each customer
# with a balance costs one more request, which would make the run long without telling more.
RATE_LIMITED_TYPES = ("invoice", "charge", "refund", "invoiceitem", "subscription", "balance_transaction")
API_KEY = "sk_test_sandbox"
BASE_ENV = {"STRIPE_API_KEY": API_KEY, "STRIPE_WEBHOOK_SECRET": "whsec_bench",
            "SECRET_KEY": "bench-secret", "SECURE_COOKIES": "false"}


def settings_for(url: str, **kw: Any) -> Settings:
    return replace(Settings.load({**BASE_ENV, "DATABASE_URL": url}, env_file=Path("/nonexistent")), **kw)


def seed_state(objects: int, state_file: Path) -> tuple[int, float]:
    """A sandbox state file holding about `objects` objects; (customers, seconds)."""
    from sandbox.stripe.bulk_seed import seed
    from sandbox.stripe.core import Sandbox

    customers = max(1, round(objects / OBJECTS_PER_CUSTOMER))
    sb = Sandbox(state_file=state_file)
    try:
        report = seed(sb, customers=customers)
    finally:
        sb.close()
    return customers, report.seconds


@contextlib.contextmanager
def sandbox_process(state_file: Path) -> Iterator[str]:
    """The sandbox server (as `revops sandbox stripe` runs it) on a free port in a child process,
    serving `state_file`; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from sandbox.stripe.server import serve; "
         "serve(port=0, state_file=Path(sys.argv[1]))", str(state_file)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        url = None
        while url is None:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"The sandbox process ended with status {proc.returncode} before serving.")
            found = re.search(r"(http://[\d.]+:\d+)", line)
            if found:
                url = found.group(1)
            elif time.monotonic() > deadline:
                raise RuntimeError("The sandbox process did not say where it listens within 120 s.")
        _sandbox_pids[url] = proc.pid
        # The sandbox's first API request runs what fell due while the state file was loaded (a
        # scan of every watched object): emulator start-up, not part of any sync, so done here.
        sandbox_requests(url)
        warm = urllib.request.Request(f"{url}/v1/events?limit=1",  # noqa: S310 - our loopback sandbox
                                      headers={"Authorization": f"Bearer {API_KEY}"})
        with urllib.request.urlopen(warm, timeout=120) as response:  # noqa: S310
            response.read()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


_sandbox_pids: dict[str, int] = {}


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default), from /proc."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sandbox_requests(url: str, *, reset: bool = False) -> dict[str, Any]:
    """The sandbox's own count of API requests served (and when the first and last arrived)."""
    # Our own sandbox on loopback (an http:// URL this module made).
    request = urllib.request.Request(f"{url}/_sandbox/requests", method="DELETE" if reset else "GET")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return dict(json.loads(response.read()))


@contextlib.contextmanager
def fresh_database(db_url: str | None, workdir: Path) -> Iterator[str]:
    """A new empty warehouse: a SQLite file in `workdir`, or a new database on `db_url`'s server."""
    from store.migrate import upgrade

    if db_url is None:
        url = f"sqlite:///{workdir}/sync-{uuid.uuid4().hex[:8]}.db"
        upgrade(url)
        yield url
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"revops_sync_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(db_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        from store.db import engine_for

        with contextlib.suppress(Exception):
            engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def _profiled(path: Path | None, clock: str = "cpu") -> Iterator[None]:
    """cProfile of this thread and of every thread started meanwhile (the sync's workers), merged
    into one file: the workers do the paging, so a profile of the calling thread alone shows only
    them being waited for. `clock="cpu"` times each thread's own CPU (time.thread_time): with eight
    threads on two cores, wall time charges a function for every wait on the GIL, a socket or a
    row lock, which hides where the CPU goes; `clock="wall"` shows those waits."""
    if path is None:
        yield
        return
    import threading

    profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def new_profile() -> cProfile.Profile:
        return cProfile.Profile(time.thread_time) if clock == "cpu" else cProfile.Profile()

    def run(self: threading.Thread) -> None:
        profiler = new_profile()
        profiles.append(profiler)
        profiler.enable()
        try:
            original_run(self)
        finally:
            profiler.disable()

    main = new_profile()
    threading.Thread.run = run  # type: ignore[method-assign]
    main.enable()
    try:
        yield
    finally:
        main.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
        stats = pstats.Stats(main)
        for profiler in profiles:
            with contextlib.suppress(TypeError):  # a thread that never ran anything
                stats.add(profiler)
        stats.dump_stats(str(path))


def _unlimited_run(url: str, db_url: str | None, workdir: Path, profile: Path | None,
                   clock: str = "cpu", workers: int | None = None) -> dict[str, float]:
    from store.sync import full_sync

    with fresh_database(db_url, workdir) as database:
        settings = settings_for(database, stripe_api_base=url, stripe_api_key=API_KEY)
        pid = _sandbox_pids.get(url)
        cpu_sync, cpu_sandbox = cpu_seconds(), cpu_seconds(pid) if pid else 0.0
        started = time.monotonic()
        with _profiled(profile, clock):
            report = full_sync(settings, rate=None) if workers is None else \
                full_sync(settings, rate=None, workers=workers)
        seconds = time.monotonic() - started
        cpu_sync, cpu_sandbox = cpu_seconds() - cpu_sync, (cpu_seconds(pid) if pid else 0.0) - cpu_sandbox
    return {"objects": float(report.objects), "seconds": seconds, "objects_per_s": report.objects / seconds,
            "requests": float(report.requests), "paging_seconds": report.paging_seconds,
            "cpu_sync_seconds": cpu_sync, "cpu_sandbox_seconds": cpu_sandbox}


def _rate_limited_run(url: str, db_url: str | None, workdir: Path, rate: float,
                      types: tuple[str, ...]) -> dict[str, float]:
    """A full sync of `types` at `rate` requests/s: what fraction of that rate reached the sandbox."""
    from store.sync import full_sync

    with fresh_database(db_url, workdir) as database:
        settings = settings_for(database, stripe_api_base=url, stripe_api_key=API_KEY)
        sandbox_requests(url, reset=True)
        report = full_sync(settings, rate=rate, object_types=types)
        seen = sandbox_requests(url)
    # n requests paced 1/rate apart span (n - 1)/rate seconds from the first to the last.
    n = int(seen["requests"])
    span = float(seen["last"]) - float(seen["first"])
    achieved = (n - 1) / span if n > 1 and span > 0 else 0.0
    return {"rate": rate, "requests": float(n), "span_seconds": span, "achieved_per_s": achieved,
            "rate_limited_ratio": achieved / rate, "sync_requests": float(report.requests)}


def measure_sync(objects: int, db_url: str | None = None, *, rate: float = 25.0,
                 profile: Path | None = None, clock: str = "cpu", workers: int | None = None) -> dict[str, float]:
    """Seed a sandbox with about `objects` objects, serve it from its own process, and time a full
    sync into a fresh database (unlimited), then one at `rate` requests/s (limit binding).

    Returns at least objects, seconds, objects_per_s and rate_limited_ratio."""
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        workdir = Path(tmp)
        state_file = workdir / "stripe-sandbox.sqlite3"
        customers, seed_seconds = seed_state(objects, state_file)
        with sandbox_process(state_file) as url:
            result = _unlimited_run(url, db_url, workdir, profile, clock, workers)
            limited = _rate_limited_run(url, db_url, workdir, rate, RATE_LIMITED_TYPES)
    result.update({"customers": float(customers), "seed_seconds": seed_seconds,
                   "rate_limited_ratio": limited["rate_limited_ratio"], "rate": rate,
                   "rate_limited_requests": limited["requests"], "rate_achieved_per_s": limited["achieved_per_s"]})
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=50000, help="about how many objects to seed and sync")
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (a fresh database is made on its server)")
    parser.add_argument("--rate", type=float, default=25.0, help="requests/s for the rate-limited run")
    parser.add_argument("--profile", type=Path, nargs="?", const=Path("sync-bench.prof"), default=None,
                        help="write a cProfile of the unlimited run here and print its top entries")
    parser.add_argument("--workers", type=int, default=None, help="the sync's workers (default: full_sync's own)")
    parser.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu",
                        help="what the profile times: each thread's CPU (default) or wall time, waits included")
    args = parser.parse_args(argv)
    from store.sync import full_sync

    load_before = os.getloadavg()
    r = measure_sync(args.objects, args.db, rate=args.rate, profile=args.profile, clock=args.profile_clock,
                     workers=args.workers)
    load_after = os.getloadavg()
    backend = "PostgreSQL" if args.db else "SQLite"
    print(f"seeded {r['customers']:.0f} customers in {r['seed_seconds']:.1f} s; sandbox in its own process; "
          f"{backend}")
    workers = args.workers or inspect.signature(full_sync).parameters["workers"].default
    print(f"sync (limit off, {workers} workers): {r['objects']:.0f} objects in {r['seconds']:.2f} s = "
          f"{r['objects_per_s']:.0f} objects/s (goal >= {GOAL_OBJECTS_PER_S:.0f}); "
          f"{r['requests']:.0f} requests, paging {r['paging_seconds']:.2f} s; CPU: sync {r['cpu_sync_seconds']:.2f} s, "
          f"sandbox {r['cpu_sandbox_seconds']:.2f} s")
    print(f"sync (limit {r['rate']:g} requests/s): {r['rate_limited_requests']:.0f} requests reached the sandbox "
          f"at {r['rate_achieved_per_s']:.2f}/s = {100 * r['rate_limited_ratio']:.1f}% of the limit "
          f"(goal >= {100 * GOAL_RATE_RATIO:.0f}%)")
    print("load average (1, 5, 15 min): before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}".format(
        *load_before, *load_after))
    print(f"sync-bench: objects={r['objects']:.0f} objects_per_s={r['objects_per_s']:.0f} "
          f"rate_limited_ratio={r['rate_limited_ratio']:.3f} load1={load_after[0]:.2f}")
    if args.profile is not None:
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(35)


if __name__ == "__main__":
    main()
