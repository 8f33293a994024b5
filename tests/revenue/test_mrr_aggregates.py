"""Issue 13: MRR pre-aggregates kept by the revenue rebuild (store/mrr_aggregates.py).

- The hand-computed bridge, cohort, committed and summary figures of test_bridge.py come out the
  same from the pre-aggregates (its tests run again here on a refreshed warehouse).
- Every MRR report equals the live per-customer computation, for ranges ending on the refresh
  day mid-month and on month ends.
- Maintained incrementally over random partial refreshes, the aggregates equal a full refresh's,
  and both equal `domain.mrr.bridge` over the per-customer snapshots (hypothesis).
- The first request to each MRR endpoint and to the page after a sync reads the pre-aggregates: no
  statement touches the subscription, item or price tables (counted on the app's engine).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from domain import calendar
from domain import mrr as domain_mrr
from reports import cache
from reports import cohorts as cohorts_report
from reports.period import Converter, Range
from settings import Settings
from store import mrr_aggregates
from store.db import unit_of_work
from store.revenue import mrr_inputs
from store.warehouse import (
    TABLES,
    ExchangeRate,
    StripeCustomer,
    StripePrice,
    StripeSubscription,
    StripeSubscriptionItem,
    StripeSubscriptionSchedule,
    row_for,
    upsert,
)
from tests.fixtures.app import auth
from tests.revenue import test_bridge_properties as bridge_properties
from tests.revenue.conftest import app_after_a_sync, statements_run
from tests.revenue.test_bridge import (  # noqa: F401  (run again here, on the pre-aggregates)
    FIXTURE,
    RANGE,
    price,
    subscription,
    test_cohorts_by_start_month,
    test_committed_mrr_for_the_next_twelve_months,
    test_every_report_downloads_as_csv_with_the_same_figures,
    test_the_bridge_month_by_month,
    ts,
)
from web import create_app

REFRESHED_ON = date(2026, 6, 30)


@pytest.fixture
def fixture_app(revenue_settings: Settings) -> Flask:
    """test_bridge.py's warehouse, with the pre-aggregates refreshed as of 30 June 2026: its tests
    imported above read them (their ranges end on month ends, committed MRR on the refresh day)."""
    with unit_of_work(revenue_settings.database_url) as s:
        for o in FIXTURE:
            upsert(s, TABLES[o["object"]][0], [row_for(o)])
        mrr_aggregates.refresh(s, None, today=REFRESHED_ON)
    cache.clear()
    app = create_app(revenue_settings, temporal=object())
    app.testing = True
    return app


def test_the_fixture_is_read_from_the_pre_aggregates(fixture_app: Flask, revenue_settings: Settings) -> None:
    with unit_of_work(revenue_settings.database_url) as s:
        keep = mrr_aggregates.kept(s)
        assert keep is not None and keep.refresh_day == REFRESHED_ON
        # B first paid in November 2025: month ends from October 2025 to 13 months after June 2026.
        assert keep.month_ends[0] == date(2025, 10, 31) and keep.month_ends[-1] == date(2027, 7, 31)
        assert keep.pair(date(2025, 12, 31), date(2026, 6, 30)) is not None  # the summary's
        assert keep.pair(date(2026, 1, 1), date(2026, 6, 30)) is None  # not a snapshot day: live
        assert mrr_aggregates.customer_runs(s) > 0


def _get(app: Flask, users: dict[str, str], path: str) -> Any:
    response = app.test_client().get(path, headers=auth(users["viewer"]))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


MID_MONTH = date(2026, 6, 17)
PATHS = [f"/api/revenue/{name}?{query}" for name in ("mrr", "bridge", "cohorts", "summary")
         for query in ("start=2026-01-01&end=2026-06-17", RANGE, "start=2025-10-01&end=2026-06-17",
                       "start=2026-06-01&end=2026-06-17", "start=2020-01-01&end=2020-02-29")] + [
    "/api/revenue/committed?end=2026-06-17", "/api/revenue/bridge?start=2026-07-01&end=2027-06-30",
    "/api/revenue/mrr?start=2026-07-01&end=2027-07-31"]


def test_every_mrr_report_equals_the_live_computation(revenue_settings: Settings, users: dict[str, str]) -> None:
    """Refreshed mid-month: ranges ending on the refresh day, on month ends, in the future."""
    with unit_of_work(revenue_settings.database_url) as s:
        for o in FIXTURE:
            upsert(s, TABLES[o["object"]][0], [row_for(o)])
    app = create_app(revenue_settings, temporal=object())
    app.testing = True
    cache.clear()
    live = {path: _get(app, users, path) for path in PATHS}
    with unit_of_work(revenue_settings.database_url) as s:
        mrr_aggregates.refresh(s, None, today=MID_MONTH)
    cache.clear()
    for path in PATHS:
        assert _get(app, users, path) == live[path], path
    # The hand-computed June (A 150, B 50, C 60, D 40, E 240) as of the 17th.
    summary = _get(app, users, "/api/revenue/summary?start=2026-06-01&end=2026-06-17")
    assert (summary["mrr"], summary["customers"], summary["movements"]["expansion"]) == ("540.00", 5, "120.00")


def test_a_rate_that_moves_within_a_month_is_an_fx_movement(revenue_settings: Settings,
                                                           users: dict[str, str]) -> None:
    """Kept in euros, reported in dollars at 1.10 on 31 May and 1.20 on 30 June: the start is at
    May's rate, the fx movement re-expresses it at June's, and start + movements + fx = end."""
    objects = [{**price(10000), "currency": "eur"},
               *({**o, "currency": "eur"} if o["object"] == "subscription" else o
                 for o in subscription("sub_eur", "cus_eur", 10000, ts(2026, 1, 1))),
               *({**o, "currency": "eur"} if o["object"] == "subscription" else o
                 for o in subscription("sub_eur2", "cus_eur2", 10000, ts(2026, 6, 10)))]
    with unit_of_work(revenue_settings.database_url) as s:
        for o in objects:
            upsert(s, TABLES[o["object"]][0], [row_for(o)])
        for day, rate in ((date(2026, 1, 1), "1.10"), (date(2026, 6, 1), "1.20")):
            s.add(ExchangeRate(currency="eur", reporting_currency="usd", rate=Decimal(rate), valid_from=day))
        mrr_aggregates.refresh(s, None, today=date(2026, 7, 15))
    cache.clear()
    app = create_app(revenue_settings, temporal=object())
    app.testing = True
    body = _get(app, users, "/api/revenue/bridge?start=2026-06-01&end=2026-06-30&currency=usd")
    [june] = body["months"]
    assert (june["start_mrr"], june["new"], june["fx"], june["end_mrr"]) == ("110.00", "120.00", "10.00", "240.00")
    # NRR against the start at June's rate: 120.00 kept of 120.00.
    assert (june["nrr"], june["expansion"]) == ("100.00", "0.00")
    points = _get(app, users, "/api/revenue/mrr?start=2026-06-01&end=2026-06-30&currency=usd")["points"]
    assert (points[0]["fx"], points[0]["mrr"]) == ("10.00", "240.00")


# --- incremental == full == live, on random histories ----------------------------------------

TODAY = date(2026, 3, 14)
CUSTOMERS = ["cus_a", "cus_b", "cus_c", "cus_d"]
AMOUNTS = [3000, 5000, 12000]


def _day(offset: int) -> int:
    return ts(2025, 6, 1) + offset * 86400


@st.composite
def a_subscription(draw: st.DrawFn, index: int) -> list[dict[str, Any]]:
    start = draw(st.integers(0, 500))
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["trial_end"] = _day(start + draw(st.integers(1, 60)))
    if draw(st.booleans()):
        fields["cancel_at"] = _day(start + draw(st.integers(1, 500)))
    if draw(st.booleans()):
        fields.update(status="canceled", canceled_at=_day(start), ended_at=_day(start + draw(st.integers(0, 300))))
    return subscription(f"sub_{index}", draw(st.sampled_from(CUSTOMERS)), draw(st.sampled_from(AMOUNTS)),
                        _day(start), quantity=draw(st.integers(1, 3)), **fields)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[list[dict[str, Any]]], list[list[list[dict[str, Any]]]]]:
    """Subscriptions, then a sequence of changes: each a few subscriptions (new or replaced)."""
    first = [draw(a_subscription(i)) for i in range(draw(st.integers(1, 6)))]
    changes = [[draw(a_subscription(draw(st.integers(0, 8)))) for _ in range(draw(st.integers(1, 2)))]
               for _ in range(draw(st.integers(1, 4)))]
    return first, changes


def _write(s: Any, objects: list[dict[str, Any]]) -> None:
    for o in objects:
        upsert(s, TABLES[o["object"]][0], [row_for(o)])


AGGREGATE_TABLES = [mrr_aggregates.MrrCustomerRun, mrr_aggregates.MrrCustomer, mrr_aggregates.MrrBridge,
                    mrr_aggregates.MrrBridgeCustomers, mrr_aggregates.MrrCohort, mrr_aggregates.MrrScheduledChurn]


def _tables(s: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every aggregate table's rows, rows of zeros left out (a subtraction leaves them behind)."""
    out = {}
    for model in AGGREGATE_TABLES:
        columns = list(model.__table__.columns)
        rows = [tuple(r) for r in s.execute(select(*columns))]
        numbers = [i for i, c in enumerate(columns) if c.name in (*mrr_aggregates.AMOUNTS, *mrr_aggregates.COUNTS,
                                                                   "customers")]
        out[model.__tablename__] = sorted(r for r in rows if not numbers or any(r[i] for i in numbers))
    return out


def _clear(s: Any) -> None:
    for model in (*AGGREGATE_TABLES, mrr_aggregates.MrrLeftOut, mrr_aggregates.MrrRefresh, StripeSubscriptionItem,
                  StripeSubscription, StripeSubscriptionSchedule, StripePrice, StripeCustomer):
        s.execute(delete(model))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories())
def test_incremental_refreshes_equal_a_full_refresh_and_the_live_bridge(
        revenue_settings: Settings, history: tuple[list[Any], list[Any]]) -> None:
    first, changes = history
    database = revenue_settings.database_url
    with unit_of_work(database) as s:
        _clear(s)
        _write(s, [price(a) for a in AMOUNTS])
        for objects in first:
            _write(s, objects)
        mrr_aggregates.refresh(s, None, today=TODAY)
    for change in changes:
        with unit_of_work(database) as s:
            touched = set()
            for objects in change:
                old = s.get(StripeSubscription, objects[0]["id"])
                if old is not None and old.customer_id:
                    touched.add(old.customer_id)  # moved to another customer: the old one changes too
                _write(s, objects)
                touched.add(objects[0]["customer"])
            mrr_aggregates.refresh(s, touched, today=TODAY)
    with unit_of_work(database) as s:
        incremental = _tables(s)
        keep = mrr_aggregates.kept(s)
        assert keep is not None
        pairs = sorted(keep.pairs())
        figures = mrr_aggregates.pair_figures(s, pairs)
        subs = mrr_inputs(s)[0]
        mrr_aggregates.refresh(s, None, today=TODAY)
        full = _tables(s)
        # A full refresh may start later (a change moved the first paying month): its bridge rows
        # then start later too, and the same pairs are read through `Kept.pair`.
        again = mrr_aggregates.kept(s)
        assert again is not None
        keys = {p: again.pair(*p) for p in pairs}
        assert None not in keys.values()
        figures_full = mrr_aggregates.pair_figures(s, sorted({k for k in keys.values() if k is not None}))
        # Cohorts over every kept month, read as the cohort report reads them.
        whole = Range(keep.first_month, keep.last_day, "usd")
        kept_cohorts = cohorts_report._kept_cohorts(s, whole, Converter(s, whole))
    assert kept_cohorts is not None
    month_ends = [(calendar.month_start(d), domain_mrr.mrr_by_customer(subs, d)) for d in keep.month_ends[1:]]
    assert kept_cohorts == domain_mrr.cohorts(month_ends, domain_mrr.first_paying_days(subs))
    bridge_tables = ("mrr_bridge", "mrr_bridge_customers")
    assert {k: v for k, v in full.items() if k not in bridge_tables} == {
        k: v for k, v in incremental.items() if k not in bridge_tables}
    empty = mrr_aggregates.PairFigures({}, [0] * 5)
    for p, key in keys.items():
        assert key is not None
        assert _nonzero(figures_full[key].get(None) or empty) == _nonzero(figures[p].get(None) or empty), p
    if again.first_month == keep.first_month:
        assert full == incremental
    # The live computation, per customer, on the same pairs of days.
    first_paid = domain_mrr.first_paying_days(subs)
    for start, end in pairs:
        [live] = domain_mrr.bridge([(start, domain_mrr.mrr_by_customer(subs, start)),
                                    (end, domain_mrr.mrr_by_customer(subs, end))], first_paid)
        found = figures[(start, end)].get(None) or empty
        amounts = found.amounts.get("usd", [0] * 8)
        assert (amounts[:7], found.counts) == (
            [live.start_mrr, live.new, live.reactivation, live.expansion, live.contraction, live.churned,
             live.end_mrr],
            [live.start_customers, live.new_customers, live.reactivated_customers, live.churned_customers,
             live.end_customers]), (start, end)


def _nonzero(found: mrr_aggregates.PairFigures) -> tuple[dict[str, list[int]], list[int]]:
    return {c: v for c, v in found.amounts.items() if any(v)}, found.counts


@settings(max_examples=100, deadline=None)
@given(bridge_properties.histories(), st.lists(st.sampled_from(bridge_properties.MONTH_ENDS), min_size=1,
                                               max_size=12, unique=True))
def test_stretches_and_days_price_every_subscription_alike(subs: list[domain_mrr.Subscription],
                                                          picked: list[date]) -> None:
    """`mrr_runs` (the full refresh) and `mrr_by_currency_series` (the partial one) against
    `subscription_mrr` on each day."""
    days = sorted(picked)
    expanded: list[dict[tuple[str, str], int]] = [{} for _ in days]
    for customer, currency, first, stop, value in domain_mrr.mrr_runs(subs, days):
        for i in range(first, stop):
            expanded[i][(customer, currency)] = expanded[i].get((customer, currency), 0) + value
    priced: list[dict[tuple[str, str], int]] = [{} for _ in days]
    for i, d in enumerate(days):
        for sub in subs:
            if value := domain_mrr.subscription_mrr(sub, d):
                priced[i][(sub.customer, "usd")] = priced[i].get((sub.customer, "usd"), 0) + value
    assert expanded == domain_mrr.mrr_by_currency_series(subs, days) == priced


def test_change_days_price_a_subscription_as_often_as_it_changes() -> None:
    sub = domain_mrr.Subscription("s", "c", "usd", "active", date(2026, 1, 10),
                                  (domain_mrr.Item(1000, 1, "month"),), trial_end=date(2026, 2, 1),
                                  cancel_at=date(2026, 5, 20))
    days = [calendar.month_end(date(2026, m, 1)) for m in range(1, 8)] + [date(2026, 3, 14)]
    assert domain_mrr.mrr_by_currency_series([sub], days) == [
        {("c", "usd"): v} if v else {} for v in (0, 1000, 1000, 1000, 0, 0, 0, 1000)]
    assert domain_mrr.change_days(sub) == [date(2026, 1, 10), date(2026, 2, 1), date(2026, 5, 20)]


# --- the first request after a sync reads the pre-aggregates ---------------------------------

SUBSCRIPTION_TABLES = ("stripe_subscriptions", "stripe_subscription_items", "stripe_prices")


def test_the_first_request_after_a_sync_reads_the_pre_aggregates(fresh_stripe_sandbox: Any,
                                                                  revenue_settings: Settings,
                                                                  users: dict[str, str]) -> None:
    app = app_after_a_sync(fresh_stripe_sandbox, revenue_settings, customers=4, subscriptions=3, invoices=1)
    with statements_run(revenue_settings) as seen:
        bodies = {name: _get(app, users, f"/api/revenue/{name}")
                  for name in ("mrr", "summary", "bridge", "cohorts", "committed")}
        cache.clear()
        page = app.test_client().get("/revenue", headers=auth(users["viewer"]))
        assert page.status_code == 200
    statements = [statement.lower() for statement, _ in seen]
    assert statements, "no statement was counted: the listener is not on the app's engine"
    read = [s for s in statements if any(t in s for t in SUBSCRIPTION_TABLES)]
    assert read == [], read
    assert any("mrr_bridge" in s for s in statements)
    today = datetime.now(UTC).date()
    # Three subscriptions of 450.00, one cancelled by the incremental sync: two left.
    assert (bodies["summary"]["mrr"], bodies["summary"]["customers"], bodies["summary"]["end"]) == (
        "900.00", 2, today.isoformat())
    assert bodies["mrr"]["points"][-1]["mrr"] == bodies["committed"]["mrr"] == "900.00"


def test_the_day_after_a_sync_the_default_range_ends_on_the_sync_day(revenue_settings: Settings,
                                                                     users: dict[str, str]) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with unit_of_work(revenue_settings.database_url) as s:
        _write(s, [price(5000), *subscription("sub_y", "cus_y", 5000, ts(2025, 1, 1))])
        mrr_aggregates.refresh(s, None, today=yesterday)
    cache.clear()
    app = create_app(revenue_settings, temporal=object())
    app.testing = True
    body = _get(app, users, "/api/revenue/summary")
    assert (body["end"], body["mrr"]) == (yesterday.isoformat(), "50.00")


def test_loading_some_customers_reads_what_loading_everyone_does(revenue_settings: Settings) -> None:
    """The partial refresh's loader against `store.revenue.mrr_inputs`: the same subscriptions
    (schedules, a metered price's last period, an unsynced price) and the same items left out."""
    from tests.revenue.test_mrr_prices import test_metered_and_currency_option_prices_and_what_is_left_out

    test_metered_and_currency_option_prices_and_what_is_left_out(revenue_settings)  # its warehouse
    unsynced = subscription("sub_x", "cus_x", 777, ts(2026, 1, 1))
    with unit_of_work(revenue_settings.database_url) as s:
        _write(s, [*FIXTURE, *unsynced])
    with unit_of_work(revenue_settings.database_url) as s:
        everyone, left_out = mrr_inputs(s)
        customers = sorted({sub.customer for sub in everyone})
        some = customers[::2]
        got, got_left_out = mrr_aggregates.load_inputs(s, some)
        got_all, by_customer = mrr_aggregates.load_inputs(s, customers)
    assert "cus_billed" in customers and "cus_x" in customers
    assert sorted(got, key=lambda sub: sub.id) == sorted((sub for sub in everyone if sub.customer in some),
                                                         key=lambda sub: sub.id)
    assert sorted(m for ms in got_left_out.values() for m in ms) == sorted(
        m for m in left_out if any(f" {sub.id} " in m for sub in everyone if sub.customer in some)) != []
    assert sorted(got_all, key=lambda sub: sub.id) == sorted(everyone, key=lambda sub: sub.id)
    assert sorted(m for ms in by_customer.values() for m in ms) == left_out


def test_the_first_refresh_of_a_new_day_or_of_an_earlier_payer_is_a_full_one(revenue_settings: Settings) -> None:
    with unit_of_work(revenue_settings.database_url) as s:
        _write(s, [price(5000), *subscription("sub_1", "cus_1", 5000, ts(2026, 1, 10)),
                   *subscription("sub_2", "cus_2", 5000, ts(2026, 2, 10))])
        mrr_aggregates.refresh(s, None, today=date(2026, 3, 14))
        # The next day, a webhook about cus_1: cus_2's MRR on the new day is needed too.
        mrr_aggregates.refresh(s, {"cus_1"}, today=date(2026, 3, 15))
        after_day = _tables(s)
        keep = mrr_aggregates.kept(s)
        assert keep is not None and keep.refresh_day == date(2026, 3, 15)
        assert after_day["mrr_customer_runs"] != []
        assert mrr_aggregates.customers_on(s, date(2026, 3, 15), ["cus_1", "cus_2"]) == {
            "cus_1": {"usd": 5000}, "cus_2": {"usd": 5000}}
        # A backdated subscription pays before the first month kept (January): every pair moves.
        _write(s, subscription("sub_3", "cus_2", 5000, ts(2025, 11, 1)))
        mrr_aggregates.refresh(s, {"cus_2"}, today=date(2026, 3, 15))
        keep = mrr_aggregates.kept(s)
        assert keep is not None and keep.first_month == date(2025, 11, 1)
        partial = _tables(s)
        mrr_aggregates.refresh(s, None, today=date(2026, 3, 15))
        assert _tables(s) == partial
