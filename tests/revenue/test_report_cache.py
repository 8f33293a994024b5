"""The report cache (cachetools' LRU keyed on the warehouse version), on a migrated database: a
hit does not recompute, a warehouse write does, the least recently used entry leaves first, and
reports hand out copies their callers may format in place."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from reports import cache
from reports.period import Converter, Range
from settings import Settings
from store.db import unit_of_work
from store.warehouse import touch


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_a_warehouse_write_recomputes_and_a_hit_does_not(settings: Settings) -> None:
    computed: list[int] = []

    def rows() -> list[int]:
        computed.append(1)
        return [len(computed)]

    with unit_of_work(settings.database_url) as session:
        assert cache.query(session, "rows", rows) == [1]
        assert cache.query(session, "rows", rows) == [1]
        assert cache.query(session, "rows", rows, "other args") == [2]
        touch(session)
    with unit_of_work(settings.database_url) as session:
        assert cache.query(session, "rows", rows) == [3]
    assert len(computed) == 3


def test_the_least_recently_used_entry_leaves_first() -> None:
    calls: dict[int, int] = {}

    def value(n: int) -> int:
        calls[n] = calls.get(n, 0) + 1
        return n

    for n in range(cache.CACHE_ENTRIES):
        cache.cached(("n", n), lambda n=n: value(n))  # type: ignore[misc]
    cache.cached(("n", 0), lambda: value(0))  # a hit: 0 is now the most recently used
    cache.cached(("n", cache.CACHE_ENTRIES), lambda: value(cache.CACHE_ENTRIES))  # evicts 1, not 0
    cache.cached(("n", 0), lambda: value(0))
    cache.cached(("n", 1), lambda: value(1))
    assert calls[0] == 1 and calls[1] == 2


def test_a_report_is_a_copy_and_keeps_the_missing_rates(settings: Settings) -> None:
    r = Range(date(2026, 1, 1), date(2026, 3, 31), "usd")
    with unit_of_work(settings.database_url) as session:
        first = Converter(session, r)

        def compute() -> dict[str, list[object]]:
            first.missing.add("eur")  # a currency with no rate, found while computing
            return {"rows": [1]}

        report = cache.report(session, "demo", r, first, compute)
        report["rows"].append(2)  # a caller formatting its copy
        again = Converter(session, r)
        assert cache.report(session, "demo", r, again, lambda: {"rows": ["recomputed"]}) == {"rows": [1]}
        assert again.missing == {"eur"}
