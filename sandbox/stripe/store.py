"""State: objects keyed by id, per-type creation order, ids, list pagination, expand, and the disk.

Objects are stored as plain dicts already in API shape (ids, not embedded objects). Keys starting
with `_` are sandbox-internal bookkeeping and never rendered.

On disk (`Disk`) the state is a SQLite database with one row per object. Handlers mutate objects in
place, so `Objects` remembers which ids a request looked at; a save serializes only those, and
writes only the rows whose JSON changed. A write therefore costs what it touched, not the size of
the state (the old whole-file JSON snapshot took 26 s for 700 writes once the state was large).
"""

from __future__ import annotations

import bisect
import json
import logging
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, overload

import stripe

from .errors import invalid, no_such

log = logging.getLogger(__name__)
_T = TypeVar("_T")

Obj = dict[str, Any]

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# id prefix -> object type, for expand and lookups by id.
PREFIXES: dict[str, str] = {
    "cus_": "customer",
    "cbtxn_": "customer_balance_transaction",
    "prod_": "product",
    "price_": "price",
    "in_": "invoice",
    "ii_": "invoiceitem",
    "il_": "line_item",
    "sub_sched_": "subscription_schedule",
    "sub_": "subscription",
    "si_": "subscription_item",
    "ch_": "charge",
    "txn_": "balance_transaction",
    "re_": "refund",
    "cn_": "credit_note",
    "cnli_": "credit_note_line_item",
    "dp_": "dispute",
    "evt_": "event",
    "we_": "webhook_endpoint",
    "di_": "discount",
    "inpay_": "invoice_payment",
}

# Fields Stripe only returns when asked for with `expand[]` ("includable" fields).
INCLUDABLE: dict[str, frozenset[str]] = {"price": frozenset({"tiers"}), "invoice": frozenset({"payments"})}


def random_token(n: int = 24) -> str:
    value = int.from_bytes(secrets.token_bytes(n))  # 8 random bits per base-62 digit: plenty
    out = []
    for _ in range(n):
        value, digit = divmod(value, 62)
        out.append(_ALPHABET[digit])
    return "".join(out)


def new_id(prefix: str, n: int = 24) -> str:
    return prefix + random_token(n)


class Objects(dict[str, Obj]):
    """Objects by id that remember which ids were read or written since the last save.

    Reads are remembered too because handlers change the dicts they read in place. While
    `tracking` is off (read-only requests) only additions and removals are remembered.
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.touched: set[str] = set()
        self.removed: set[str] = set()
        self.tracking = True

    def __getitem__(self, key: str) -> Obj:
        value = dict.__getitem__(self, key)
        if self.tracking:
            self.touched.add(key)
        return value

    @overload  # type: ignore[override]
    def get(self, key: str, /) -> Obj | None: ...
    @overload
    def get(self, key: str, default: Obj, /) -> Obj: ...
    @overload
    def get(self, key: str, default: _T, /) -> Obj | _T: ...
    def get(self, key: str, default: Any = None, /) -> Any:
        value = dict.get(self, key, default)
        if self.tracking and value is not default:
            self.touched.add(key)
        return value

    def peek(self, key: str) -> Obj | None:
        """Read without marking the object as possibly changed (for read-only scans)."""
        return dict.get(self, key)

    def __setitem__(self, key: str, value: Obj) -> None:
        dict.__setitem__(self, key, value)
        self.touched.add(key)
        self.removed.discard(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.removed.add(key)
            self.touched.discard(key)
        return dict.pop(self, key, *default)

    def __delitem__(self, key: str) -> None:
        self.pop(key)

    def values(self) -> Any:
        if self.tracking:
            self.touched.update(self.keys())
        return dict.values(self)

    def items(self) -> Any:
        if self.tracking:
            self.touched.update(self.keys())
        return dict.items(self)

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self)


class Idempotency(dict[tuple[str, str], dict[str, Any]]):
    """Saved responses by (api key, Idempotency-Key); remembers new keys since the last save."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.added: set[tuple[str, str]] = set(self.keys())

    def __setitem__(self, key: tuple[str, str], value: dict[str, Any]) -> None:
        dict.__setitem__(self, key, value)
        self.added.add(key)


@dataclass
class State:
    objects: Objects = field(default_factory=Objects)
    order: dict[str, list[str]] = field(default_factory=dict)  # object type -> ids, oldest first
    seq: int = 0
    clock_offset: int = 0
    idempotency: Idempotency = field(default_factory=Idempotency)
    counters: dict[str, int] = field(default_factory=dict)
    webhooks_enabled: bool = True
    watch: set[str] = field(default_factory=set)  # ids with time-driven work (see core.timer)
    # Kinds whose creation order differs from `created` order (objects made at an earlier due
    # instant while catching up); lists of other kinds can paginate by bisecting on `_seq`.
    unordered: set[str] = field(default_factory=set)
    last_created: dict[str, int] = field(default_factory=dict)
    # The account's default API version: what events render in (see versions.py).
    default_api_version: str = stripe.api_version
    # grouped()'s indexes: (kind, field) -> (ids indexed, last id indexed, field value -> ids).
    _groups: dict[tuple[str, str], tuple[int, str | None, dict[Any, list[str]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def meta(self) -> dict[str, Any]:
        """Everything but objects, idempotency, counters and watch: small, saved whole."""
        return {
            "version": 2,
            "seq": self.seq,
            "clock_offset": self.clock_offset,
            "webhooks_enabled": self.webhooks_enabled,
            "unordered": sorted(self.unordered),
            "last_created": self.last_created,
            "default_api_version": self.default_api_version,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "objects": self.objects,
            "order": self.order,
            "seq": self.seq,
            "clock_offset": self.clock_offset,
            "idempotency": [[k[0], k[1], v] for k, v in self.idempotency.items()],
            "counters": self.counters,
            "webhooks_enabled": self.webhooks_enabled,
            "watch": sorted(self.watch),
            "unordered": sorted(self.unordered),
            "last_created": self.last_created,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        """A whole-file JSON snapshot (the format before the SQLite store)."""
        return cls(
            objects=Objects(data["objects"]),
            order=data["order"],
            seq=data["seq"],
            clock_offset=data["clock_offset"],
            idempotency=Idempotency({(k0, k1): v for k0, k1, v in data["idempotency"]}),
            counters=data["counters"],
            webhooks_enabled=data["webhooks_enabled"],
            watch=set(data["watch"]),
            unordered=set(data.get("unordered", [])),
            last_created=data.get("last_created", {}),
            default_api_version=data.get("default_api_version", stripe.api_version),
        )

    def add(self, obj: Obj) -> Obj:
        self.seq += 1
        obj["_seq"] = self.seq
        kind, created = obj["object"], obj.get("created")
        if created is not None:
            if created < self.last_created.get(kind, created):
                self.unordered.add(kind)
            self.last_created[kind] = max(created, self.last_created.get(kind, created))
        self.objects[obj["id"]] = obj
        self.order.setdefault(obj["object"], []).append(obj["id"])
        return obj

    def remove(self, obj_id: str) -> None:
        obj = self.objects.pop(obj_id, None)
        if obj is not None:
            ids = self.order.get(obj["object"], [])
            if obj_id in ids:
                ids.remove(obj_id)

    def get(self, obj_id: str, kind: str, *, param: str = "id", allow_deleted: bool = False) -> Obj:
        obj = self.objects.get(obj_id) if isinstance(obj_id, str) else None
        if obj is None or obj["object"] != kind or (obj.get("deleted") and not allow_deleted):
            raise no_such(kind.replace("_", " ") if kind != "invoiceitem" else "invoiceitem", str(obj_id), param)
        return obj

    def find(self, obj_id: Any) -> Obj | None:
        return self.objects.get(obj_id) if isinstance(obj_id, str) else None

    def all(self, kind: str) -> list[Obj]:
        ids = self.order.get(kind, [])
        objects = self.objects
        if objects.tracking:
            objects.touched.update(ids)
        # Every list request reads every object of its kind: dict's own lookup, not the tracking one.
        return list(map(partial(dict.__getitem__, objects), ids))

    def grouped(self, kind: str, key: str) -> dict[Any, list[str]]:
        """Ids of `kind` by the value of their field `key` (which must never change once made, like
        a balance transaction's customer), oldest first: a nested list (one customer's balance
        transactions) without reading every object of the kind on each request. Indexed as objects
        are added; indexed again from scratch when some were removed."""
        ids = self.order.get(kind, [])
        done, last, groups = self._groups.get((kind, key), (0, None, {}))
        if done > len(ids) or (done and ids[done - 1] != last):
            done, groups = 0, {}
        for obj_id in ids[done:]:
            obj = self.objects.peek(obj_id)
            if obj is not None:
                groups.setdefault(obj.get(key), []).append(obj_id)
        self._groups[(kind, key)] = (len(ids), ids[-1] if ids else None, groups)
        return groups

    def next_counter(self, name: str) -> int:
        self.counters[name] = self.counters.get(name, 0) + 1
        return self.counters[name]


# ---- rendering ---------------------------------------------------------------------------------

Renderer = Callable[[State, Obj], Obj]
_renderers: dict[str, Renderer] = {}


def renderer(kind: str) -> Callable[[Renderer], Renderer]:
    """Register a hook that builds an object's derived/embedded fields (e.g. invoice `lines`)."""

    def deco(fn: Renderer) -> Renderer:
        _renderers[kind] = fn
        return fn

    return deco


_NESTED = (dict, list)


def _copy(value: Any) -> Any:
    # Stored objects are JSON-shaped; this is much cheaper than copy.deepcopy. Scalars (most
    # values) are taken as they are without a call: every listed object is copied, and a call
    # per string and number was most of the sandbox's CPU when a sync lists 50,000 objects.
    if isinstance(value, dict):
        return {k: _copy(v) if isinstance(v, _NESTED) else v for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) if isinstance(v, _NESTED) else v for v in value]
    return value


def public(obj: Obj) -> Obj:
    return {k: _copy(v) if isinstance(v, _NESTED) else v for k, v in obj.items() if k[0] != "_"}


def render(state: State, obj: Obj, expand: Iterable[str] = ()) -> Obj:
    hook = _renderers.get(obj.get("object", ""))
    out = hook(state, obj) if hook else public(obj)
    expand = list(expand)
    for name in INCLUDABLE.get(obj.get("object", ""), ()):
        if name not in expand:
            out.pop(name, None)
    for path in expand:
        out = _expand(state, out, path.split("."), path)
    return out


def _expand(state: State, value: Any, parts: list[str], full: str) -> Any:
    if not parts:
        return value
    if isinstance(value, list):
        return [_expand(state, v, parts, full) for v in value]
    if not isinstance(value, dict):
        return value
    head, rest = parts[0], parts[1:]
    if head not in value:
        raise invalid(f"This property cannot be expanded ({full}).", param="expand")
    child = value[head]
    if isinstance(child, str) and child in state.objects:
        value[head] = _render_ref(state, child, rest)
    elif isinstance(child, list):
        value[head] = [
            _render_ref(state, c, rest) if isinstance(c, str) and c in state.objects else _expand(state, c, rest, full)
            for c in child
        ]
    else:
        value[head] = _expand(state, child, rest, full)
    return value


def _render_ref(state: State, obj_id: str, rest: list[str]) -> Obj:
    target = state.objects[obj_id]
    if target.get("deleted"):
        # Deleted objects expand to their deleted stub, like Stripe.
        return public(target)
    return render(state, target, [".".join(rest)] if rest else [])


# ---- lists ---------------------------------------------------------------------------------------


def paginate(
    state: State,
    items: list[Obj],
    params: dict[str, Any],
    url: str,
    expand: Iterable[str] = (),
    *,
    newest_first: bool = True,
) -> Obj:
    """`items` oldest first; Stripe lists newest first (invoice lines keep their own order)."""
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise invalid("Invalid limit: must be between 1 and 100", param="limit")
    after, before = params.get("starting_after"), params.get("ending_before")
    if after and before:
        raise invalid("You may only specify one of these parameters: starting_after, ending_before.")
    item_expand = [e[5:] for e in expand if e.startswith("data.")]
    if newest_first and (not items or items[0]["object"] not in state.unordered):
        # Fast path: items are oldest first by (created, _seq) already; bisect on _seq.
        def seq(o: Obj) -> int:
            return int(o["_seq"])

        cursor_id = str(after or before or "")
        seq_cursor = 0
        if cursor_id:
            cursor_obj = state.objects.get(cursor_id)
            if cursor_obj is None:
                kind = PREFIXES.get(next((p for p in PREFIXES if cursor_id.startswith(p)), ""), "object")
                raise no_such(kind, cursor_id, "starting_after" if after else "ending_before")
            seq_cursor = int(cursor_obj["_seq"])
        if after:
            idx = bisect.bisect_left(items, seq_cursor, key=seq)
            page, has_more = items[max(0, idx - limit) : idx][::-1], idx > limit
        elif before:
            idx = bisect.bisect_right(items, seq_cursor, key=seq)
            page, has_more = items[idx : idx + limit][::-1], len(items) - idx > limit
        else:
            page, has_more = items[-limit:][::-1], len(items) > limit
        return {
            "object": "list",
            "data": [render(state, o, item_expand) for o in page],
            "has_more": has_more,
            "url": url,
        }
    if newest_first:
        ordered = sorted(items, key=lambda o: (o.get("created", 0), o["_seq"]), reverse=True)
        keys = [(-o.get("created", 0), -o["_seq"]) for o in ordered]
    else:
        ordered = list(items)
        keys = [(0, i) for i in range(len(ordered))]
    index = {o["id"]: k for o, k in zip(ordered, keys, strict=True)}
    if after:
        cursor = _cursor(state, index, after, "starting_after")
        selected = [o for o, k in zip(ordered, keys, strict=True) if k > cursor]
        page, has_more = selected[:limit], len(selected) > limit
    elif before:
        cursor = _cursor(state, index, before, "ending_before")
        selected = [o for o, k in zip(ordered, keys, strict=True) if k < cursor]
        page, has_more = selected[-limit:], len(selected) > limit
    else:
        page, has_more = ordered[:limit], len(ordered) > limit
    return {
        "object": "list",
        "data": [render(state, o, item_expand) for o in page],
        "has_more": has_more,
        "url": url,
    }


def _cursor(state: State, index: dict[str, tuple[int, int]], obj_id: str, param: str) -> tuple[int, int]:
    key = index.get(obj_id)
    if key is None:
        obj = state.objects.get(obj_id)
        if obj is not None and "created" in obj:
            # Not in this (filtered) list: position it by creation like Stripe's cursors do.
            return (-obj["created"], -obj["_seq"])
        kind = PREFIXES.get(next((p for p in PREFIXES if obj_id.startswith(p)), ""), "object")
        raise no_such(kind, obj_id, param)
    return key


def list_object(data: list[Obj], url: str, *, limit: int = 10) -> Obj:
    """An embedded list (invoice `lines`, subscription `items`): the first page only."""
    return {"object": "list", "data": data[:limit], "has_more": len(data) > limit, "total_count": len(data), "url": url}


def apply_metadata(target: Obj, value: Any) -> None:
    """Stripe semantics: `metadata=""` clears all; `metadata[k]=""` removes one key."""
    if value == "":
        target["metadata"] = {}
        return
    meta = dict(target.get("metadata") or {})
    for k, v in value.items():
        if v == "":
            meta.pop(k, None)
        else:
            meta[k] = v
    target["metadata"] = meta


# ---- disk ------------------------------------------------------------------------------------------


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in the sandbox state file")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    api_key TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (api_key, key)
);
CREATE TABLE IF NOT EXISTS watch (id TEXT PRIMARY KEY);
"""


class StateFileError(ValueError):
    pass


@dataclass
class WriteStats:
    """What saves wrote: rows and bytes (the measure that must not grow with the state)."""

    saves: int = 0
    rows: int = 0
    bytes: int = 0


class Disk:
    """The state in SQLite, one row per object; `save` writes only what changed since the last save.

    Callers serialize access (the sandbox lock). A state file named `*.json` is the old whole-file
    snapshot: the database goes beside it (`*.sqlite3`) and the snapshot is imported once.
    """

    def __init__(self, path: Path) -> None:
        path = Path(path)
        self.legacy = path if path.suffix == ".json" else None
        self.path = path.with_suffix(".sqlite3") if self.legacy else path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (not a power cut): right for a test double.
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            self.conn.close()
            # Refuse rather than start empty: an empty start would later overwrite the file.
            raise StateFileError(
                f"The Stripe sandbox state file {self.path} is not a sandbox database ({e}); move it away or "
                "pass another state file."
            ) from None
        self.stats = WriteStats()
        self._wipe = False  # the next save empties every table first (replace)
        self._hashes: dict[str, int] = {}
        self._meta = ""
        self._counters: dict[str, int] = {}
        self._watch: set[str] = set()
        self._import_from = self.legacy if fresh and self.legacy is not None and self.legacy.exists() else None

    def load(self) -> State | None:
        """The saved state, or None when there is none yet (a new file)."""
        if self._import_from is not None:
            source, self._import_from = self._import_from, None
            try:
                state = State.from_json(json.loads(source.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("ignoring unreadable sandbox state file %s: %s", source, e)
                return None
            log.info("imported the sandbox state snapshot %s into %s", source, self.path)
            self.replace(state)
            return state
        meta_row = self.conn.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()
        if meta_row is None:
            return None
        meta = json.loads(meta_row[0])
        objects = Objects()
        order: dict[str, list[str]] = {}
        for obj_id, body in self.conn.execute("SELECT id, body FROM objects ORDER BY seq"):
            obj = json.loads(body)
            dict.__setitem__(objects, obj_id, obj)
            order.setdefault(obj["object"], []).append(obj_id)
            self._hashes[obj_id] = hash(body)
        idem = Idempotency(
            {(k0, k1): json.loads(v) for k0, k1, v in self.conn.execute("SELECT api_key, key, value FROM idempotency")}
        )
        idem.added.clear()
        counters = dict(self.conn.execute("SELECT name, value FROM counters").fetchall())
        watch = {row[0] for row in self.conn.execute("SELECT id FROM watch")}
        objects.touched.clear()
        state = State(
            objects=objects,
            order=order,
            seq=meta["seq"],
            clock_offset=meta["clock_offset"],
            idempotency=idem,
            counters=counters,
            webhooks_enabled=meta["webhooks_enabled"],
            watch=watch,
            unordered=set(meta["unordered"]),
            last_created=meta["last_created"],
            default_api_version=meta.get("default_api_version", stripe.api_version),
        )
        self._meta = meta_row[0]
        self._counters = dict(counters)
        self._watch = set(watch)
        return state

    def forget_idempotency(self, keys: Iterable[tuple[str, str]]) -> None:
        self.conn.executemany("DELETE FROM idempotency WHERE api_key = ? AND key = ?", list(keys))

    def replace(self, state: State) -> None:
        """Write `state` whole (a reset or an import), in the same transaction that empties the
        tables, so a crash half-way leaves the old state rather than an empty one."""
        self._wipe = True
        self._hashes.clear()
        self._meta = ""
        self._counters = {}
        self._watch = set()
        state.objects.touched.update(dict.keys(state.objects))
        state.idempotency.added.update(state.idempotency.keys())
        self.save(state)

    def save(self, state: State) -> None:
        objects = state.objects
        upserts: list[tuple[str, int, str]] = []
        for obj_id in objects.touched:
            obj = objects.peek(obj_id)
            if obj is None:
                continue
            body = _dumps(obj)
            digest = hash(body)
            if self._hashes.get(obj_id) != digest:
                upserts.append((obj_id, int(obj.get("_seq", 0)), body))
                self._hashes[obj_id] = digest
        removed = [(i,) for i in objects.removed if i not in objects]
        for (obj_id,) in removed:
            self._hashes.pop(obj_id, None)
        objects.touched.clear()
        objects.removed.clear()
        meta = _dumps(state.meta())
        counters = [(k, v) for k, v in state.counters.items() if self._counters.get(k) != v]
        idem = [(k[0], k[1], _dumps(state.idempotency[k])) for k in state.idempotency.added if k in state.idempotency]
        state.idempotency.added.clear()
        watch_add = [(i,) for i in state.watch - self._watch]
        watch_del = [(i,) for i in self._watch - state.watch]
        if not (upserts or removed or meta != self._meta or counters or idem or watch_add or watch_del):
            return
        with self._transaction():
            if self._wipe:
                for table in ("objects", "meta", "counters", "idempotency", "watch"):
                    self.conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            if upserts:
                self.conn.executemany(
                    "INSERT INTO objects (id, seq, body) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, body = excluded.body",
                    upserts,
                )
            if removed:
                self.conn.executemany("DELETE FROM objects WHERE id = ?", removed)
            if meta != self._meta:
                self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('state', ?)", (meta,))
            if counters:
                self.conn.executemany("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", counters)
            if idem:
                self.conn.executemany("INSERT OR REPLACE INTO idempotency (api_key, key, value) VALUES (?, ?, ?)", idem)
            if watch_add:
                self.conn.executemany("INSERT OR IGNORE INTO watch (id) VALUES (?)", watch_add)
            if watch_del:
                self.conn.executemany("DELETE FROM watch WHERE id = ?", watch_del)
        self._wipe = False
        rows = len(upserts) + len(removed) + len(counters) + len(idem) + len(watch_add) + len(watch_del)
        rows += int(meta != self._meta)
        self.stats.saves += 1
        self.stats.rows += rows
        self.stats.bytes += sum(len(b) for _, _, b in upserts) + sum(len(v) for _, _, v in idem)
        self.stats.bytes += len(meta) if meta != self._meta else 0
        self._meta = meta
        self._counters.update(counters)
        self._watch = set(state.watch)

    def _transaction(self) -> Any:
        conn = self.conn

        class _Tx:
            def __enter__(self) -> None:
                conn.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type: Any, *rest: Any) -> None:
                conn.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    def close(self) -> None:
        self.conn.close()
