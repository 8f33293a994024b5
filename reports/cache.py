"""An in-process cache of report results, keyed on the warehouse version (cachetools' LRU).

Every warehouse write bumps `warehouse_version`, so a key that includes it is never stale: at
100,000 subscriptions loading and pricing them is seconds, reading the marker milliseconds. Old
versions' entries are never asked for again and fall out as the least recently used.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from cachetools import LRUCache
from sqlalchemy.orm import Session

from reports.period import Converter, Range
from store import revenue as queries

CACHE_ENTRIES = 64

# cachetools' caches are not thread-safe; the web app serves requests on threads.
_lock = threading.Lock()
_entries: LRUCache[tuple[Any, ...], Any] = LRUCache(maxsize=CACHE_ENTRIES)
_MISSING = object()


def cached(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    with _lock:
        value = _entries.get(key, _MISSING)  # a hit counts as a use: it stays
    if value is not _MISSING:
        return value
    # Computed outside the lock: a slow report must not hold up every other request. Two requests
    # missing together compute twice and store the same value.
    value = compute()
    with _lock:
        _entries[key] = value
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
