"""The SQLite state file: writes cost what they change, not the size of the state; reloads are exact."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.stripe.server import start_in_thread
from sandbox.stripe.store import Disk, State

from .helpers import AUTH


def _per_write(disk: Disk, before: tuple[int, int, int]) -> tuple[float, float]:
    saves = disk.stats.saves - before[0]
    return (disk.stats.rows - before[1]) / saves, (disk.stats.bytes - before[2]) / saves


def _snapshot(disk: Disk) -> tuple[int, int, int]:
    return disk.stats.saves, disk.stats.rows, disk.stats.bytes


def test_2000_writes_persist_and_reload_at_a_constant_cost_per_write(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    sb = start_in_thread(state_file=path, seed_catalog=False)
    try:
        session = requests.Session()
        session.headers.update(AUTH)

        def create(i: int) -> dict[str, Any]:
            r = session.post(sb.url + "/v1/customers", data={"email": f"c{i}@example.com", "metadata[i]": str(i)},
                             headers={"Idempotency-Key": f"scale-{i}"}, timeout=10)
            assert r.status_code == 200, r.text
            return dict(r.json())

        disk = sb.engine.disk
        for i in range(100):
            create(i)
        early = _snapshot(disk)
        for i in range(100, 200):
            create(i)
        early_rows, early_bytes = _per_write(disk, early)
        for i in range(200, 1900):
            create(i)
        late = _snapshot(disk)
        for i in range(1900, 2000):
            last = create(i)
        late_rows, late_bytes = _per_write(disk, late)
        # A write stores its customer, its event, its idempotency entry and the small state row,
        # whether the state holds 100 customers or 1,900.
        assert early_rows == late_rows <= 5
        assert late_bytes < early_bytes * 1.1, (early_bytes, late_bytes)
        # An update touches the one customer (and its event), not the 2,000 others.
        upd = _snapshot(disk)
        r = session.post(sb.url + f"/v1/customers/{last['id']}", data={"name": "Renamed"}, timeout=10)
        assert r.status_code == 200
        assert _per_write(disk, upd)[0] <= 3
        now = sb.now()
    finally:
        sb.stop()

    again = start_in_thread(state_file=path, seed_catalog=False)
    try:
        client = again.client()
        seen, after = 0, None
        while True:
            page = client.v1.customers.list({"limit": 100, **({"starting_after": after} if after else {})})
            seen += len(page.data)
            if not page.has_more:
                break
            after = page.data[-1].id
        assert seen == 2000
        assert client.v1.customers.retrieve(last["id"]).name == "Renamed"
        assert again.now() >= now
        # The saved response for an idempotency key survives the restart.
        r = requests.post(again.url + "/v1/customers", data={"email": "c5@example.com", "metadata[i]": "5"},
                          headers={**AUTH, "Idempotency-Key": "scale-5"}, timeout=10)
        assert r.headers["Idempotent-Replayed"] == "true" and r.json()["email"] == "c5@example.com"
        assert len(client.v1.events.list({"type": "customer.created", "limit": 100}).data) == 100
    finally:
        again.stop()


# ---- the disk format itself: any sequence of changes reloads to the same state -------------------

_ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "change", "remove", "watch", "unwatch", "idem", "read"]),
        st.integers(min_value=0, max_value=30),
        st.text(max_size=5),
    ),
    max_size=60,
)


def _comparable(state: State) -> dict[str, Any]:
    data = state.to_json()
    data["objects"] = dict(data["objects"])
    data["order"] = {kind: ids for kind, ids in data["order"].items() if ids}  # an emptied kind has no rows
    data["idempotency"] = sorted(json.dumps(i, sort_keys=True) for i in data["idempotency"])
    return data


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(_ops, min_size=1, max_size=5))
def test_any_sequence_of_changes_reloads_exactly(
    tmp_path_factory: Any, batches: list[list[tuple[str, int, str]]]
) -> None:
    path = tmp_path_factory.mktemp("disk") / f"{uuid.uuid4().hex}.sqlite3"
    disk = Disk(path)
    state = disk.load() or State()
    for batch in batches:
        for op, n, text in batch:
            obj_id = f"cus_{n}"
            obj = state.objects.get(obj_id)
            if op == "add" and obj is None:
                state.add({"id": obj_id, "object": "customer", "created": n, "name": text, "metadata": {}})
            elif op == "change" and obj is not None:
                obj["metadata"][text or "k"] = str(n)  # in place, as handlers do
            elif op == "remove" and obj is not None:
                state.remove(obj_id)
            elif op == "watch":
                state.watch.add(obj_id)
            elif op == "unwatch":
                state.watch.discard(obj_id)
            elif op == "idem":
                state.idempotency[("sk_test_x", f"key-{n}")] = {"fingerprint": text, "status": 200, "body": "{}",
                                                               "headers": {}, "at": n}
            elif op == "read" and obj is not None:
                state.objects.tracking = False
                _ = state.objects[obj_id]["name"]  # a read-only request does not mark it
                state.objects.tracking = True
        disk.save(state)
    disk.close()
    reloaded = Disk(path)
    loaded = reloaded.load()
    reloaded.close()
    assert loaded is not None
    assert _comparable(loaded) == _comparable(state)
