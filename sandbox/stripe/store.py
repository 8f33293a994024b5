"""In-memory state: objects keyed by id, per-type creation order, ids, list pagination, expand.

Objects are stored as plain dicts already in API shape (ids, not embedded objects). Keys starting
with `_` are sandbox-internal bookkeeping and never rendered.
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import invalid, no_such

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


@dataclass
class State:
    objects: dict[str, Obj] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)  # object type -> ids, oldest first
    seq: int = 0
    clock_offset: int = 0
    idempotency: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    webhooks_enabled: bool = True
    watch: set[str] = field(default_factory=set)  # ids with time-driven work (see core.timer)
    # Kinds whose creation order differs from `created` order (objects made at an earlier due
    # instant while catching up); lists of other kinds can paginate by bisecting on `_seq`.
    unordered: set[str] = field(default_factory=set)
    last_created: dict[str, int] = field(default_factory=dict)

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
        return cls(
            objects=data["objects"],
            order=data["order"],
            seq=data["seq"],
            clock_offset=data["clock_offset"],
            idempotency={(k0, k1): v for k0, k1, v in data["idempotency"]},
            counters=data["counters"],
            webhooks_enabled=data["webhooks_enabled"],
            watch=set(data["watch"]),
            unordered=set(data.get("unordered", [])),
            last_created=data.get("last_created", {}),
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
        return [self.objects[i] for i in self.order.get(kind, [])]

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


def _copy(value: Any) -> Any:
    # Stored objects are JSON-shaped; this is much cheaper than copy.deepcopy.
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def public(obj: Obj) -> Obj:
    return {k: _copy(v) for k, v in obj.items() if k[0] != "_"}


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
