"""A small in-process cache of report results, keyed on the warehouse version.

Every warehouse write bumps `warehouse_version`, so a key that includes it is never stale: at
100,000 subscriptions loading and pricing them is seconds, reading the marker milliseconds.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from reports.period import Converter, Range
from store import revenue as queries

CACHE_ENTRIES = 64

_lock = threading.Lock()
_entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


def cached(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    with _lock:
        if key in _entries:
            _entries.move_to_end(key)
            return _entries[key]
    value = compute()
    with _lock:
        _entries[key] = value
        while len(_entries) > CACHE_ENTRIES:
            _entries.popitem(last=False)
    return value


def database(session: Session) -> str:
    """Which database a session reads: two apps in one process (tests) must not share entries."""
    return str(session.get_bind().engine.url)


def warehouse_key(session: Session) -> tuple[Any, ...]:
    """The database and its warehouse version: changes with every warehouse write."""
    return (database(session), queries.revenue_marker(session))


def clear() -> None:
    with _lock:
        _entries.clear()


def report(session: Session, name: str, r: Range, convert: Converter, compute: Callable[[], Any],
           *extra: Any) -> Any:
    """A whole computed report, cached on the warehouse version, the range and the rates, with the
    currencies it found no rate for; a deep copy is returned because callers format it in place."""
    key = (name, *warehouse_key(session), r, convert.reporting, convert.key, *extra)
    value, missing = cached(key, lambda: (compute(), set(convert.missing)))
    convert.missing |= missing
    return copy.deepcopy(value)


def query(session: Session, name: str, compute: Callable[[], Any], *args: Any) -> Any:
    """A warehouse query's rows, recomputed only when the warehouse changed."""
    return cached((name, *warehouse_key(session), *args), compute)
