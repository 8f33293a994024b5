"""Issue 16, the page: the revenue page in Debian's chromium on a warehouse whose figures
tests/revenue/test_bridge.py computes by hand (reactivation, a discount, a trial, a scheduled
cancellation), plus recognised invoices and a one-off charge. Tables aligned, charts with labelled
axes and tooltips, CSV downloads equal to the API, a customer view, 1280 px and 390 px."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from settings import Settings
from store.db import unit_of_work
from store.revenue import rebuild
from store.warehouse import TABLES, row_for, upsert
from tests.fixtures.app import auth
from tests.revenue.conftest import sqlite_only
from tests.revenue.test_bridge import FIXTURE, ts
from tests.web.browser import chromium, needs_chromium, screenshot, serve, sign_in
from web import create_app

pytestmark = [pytest.mark.browser, needs_chromium]

RANGE = {"start": "2025-11-01", "end": "2026-07-31", "currency": "usd"}
QUERY = "&".join(f"{k}={v}" for k, v in RANGE.items())
CHARTS = ("chart-mrr", "chart-bridge", "chart-one-off", "chart-committed")
TABLES_ON_PAGE = ("bridge-table", "cohort-table", "top-customers", "scheduled-churn", "prepaid-plans",
                  "one-off-months", "one-off-charges")


def _invoice(inv: str, customer: str, amount: int, start: int, end: int) -> list[dict[str, Any]]:
    return [{"id": inv, "object": "invoice", "customer": customer, "created": start, "currency": "usd",
             "status": "paid", "total": amount, "amount_paid": amount, "status_transitions": {"paid_at": start}},
            {"id": f"il_{inv}", "object": "line_item", "invoice": inv, "amount": amount, "currency": "usd",
             "period": {"start": start, "end": end}}]


# Revenue recognised besides the MRR fixture: A pays 300.00 for Jan–Mar 2026, C 240.00 for
# Feb–Apr; B pays 50.00 without an invoice in May (one-off), 20.00 of it refunded in June.
REVENUE: list[dict[str, Any]] = [
    *_invoice("in_page_a", "cus_a", 30_000, ts(2026, 1, 1), ts(2026, 4, 1)),
    *_invoice("in_page_c", "cus_c", 24_000, ts(2026, 2, 1), ts(2026, 5, 1)),
    {"id": "ch_page_b", "object": "charge", "customer": "cus_b", "created": ts(2026, 5, 10), "amount": 5_000,
     "currency": "usd", "status": "succeeded", "paid": True, "amount_refunded": 2_000},
    {"id": "re_page_b", "object": "refund", "charge": "ch_page_b", "amount": 2_000, "currency": "usd",
     "status": "succeeded", "created": ts(2026, 6, 3)},
]


@pytest.fixture
def warehouse_app(revenue_settings: Settings, users: dict[str, str]) -> Flask:
    with unit_of_work(revenue_settings.database_url) as s:
        for o in [*FIXTURE, *REVENUE]:
            upsert(s, TABLES[o["object"]][0], [row_for(o)])
        rebuild(s, invoices=["in_page_a", "in_page_c"], charges=["ch_page_b"], customers=[])
    app = create_app(revenue_settings, temporal=object())
    app.testing = True
    return app


@pytest.fixture
def page_app(warehouse_app: Flask, revenue_settings: Settings) -> Flask:
    sqlite_only(revenue_settings, "the page's layout and scripts do not depend on the database")
    return warehouse_app


@pytest.fixture
def base_url(page_app: Flask) -> Iterator[str]:
    with serve(page_app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _open(browser: Any, base: str, width: int, path: str = f"/revenue?{QUERY}") -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, base, "viewer")
    page.goto(f"{base}{path}")
    page.wait_for_function("() => [...document.querySelectorAll('canvas')].every(c => Chart.getChart(c))")
    return page


def _api(app: Flask, users: dict[str, str], path: str) -> Any:
    response = app.test_client().get(path, headers=auth(users["viewer"]))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


MISALIGNED = """(table) => {
  // Every header cell over its column: same left edge and width as the cells of each full row.
  const heads = [...table.tHead.rows[0].cells].map(c => c.getBoundingClientRect());
  const bad = [];
  let rows = 0;
  for (const row of table.tBodies[0].rows) {
    if (row.cells.length !== heads.length) continue;  // an empty-state row spans the table
    rows += 1;
    [...row.cells].forEach((cell, i) => {
      const box = cell.getBoundingClientRect();
      if (Math.abs(box.left - heads[i].left) > 0.5 || Math.abs(box.width - heads[i].width) > 0.5)
        bad.push([row.rowIndex, i, box.left, heads[i].left, box.width, heads[i].width]);
    });
  }
  return {rows, bad, display: getComputedStyle(table).display};
}"""

AXES = """(id) => {
  const chart = Chart.getChart(document.getElementById(id));
  const s = chart.options.scales;
  return {x: s.x.title.display ? s.x.title.text : null, y: s.y.title.display ? s.y.title.text : null,
          xticks: chart.scales.x.ticks.length, yticks: chart.scales.y.ticks.length,
          datasets: chart.data.datasets.map(d => [d.label, d.data.length]),
          width: chart.width, height: chart.height};
}"""

OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def _check_tables(page: Any) -> None:
    assert page.locator("table.grid").count() == 0, "a report table still carries the form .grid class"
    for table_id in TABLES_ON_PAGE:
        got = page.locator(f"#{table_id}").evaluate(MISALIGNED)
        assert got["display"] == "table", (table_id, got)
        assert got["bad"] == [], (table_id, got["bad"])
    # The tables with data in this fixture really were compared row by row.
    for table_id, rows in {"bridge-table": 9, "top-customers": 3, "scheduled-churn": 1, "one-off-months": 9,
                           "one-off-charges": 1}.items():
        assert page.locator(f"#{table_id}").evaluate(MISALIGNED)["rows"] == rows, table_id


def _check_charts(page: Any, currency: str = "USD") -> None:
    for chart_id in CHARTS:
        axes = page.evaluate(AXES, chart_id)
        assert axes["x"] and axes["y"] and currency in axes["y"], (chart_id, axes)
        assert axes["xticks"] > 0 and axes["yticks"] > 1, (chart_id, axes)
        assert axes["width"] > 200 and axes["height"] > 150, (chart_id, axes)
        assert all(n > 0 for _, n in axes["datasets"]), (chart_id, axes)


def test_the_page_at_1280px(browser: Any, base_url: str) -> None:
    page = _open(browser, base_url, 1280)
    _check_tables(page)
    _check_charts(page)
    assert page.evaluate(AXES, "chart-bridge")["datasets"] == [
        ["New", 9], ["Reactivation", 9], ["Expansion", 9], ["Contraction", 9], ["Churn", 9]]
    # Headline cards from the hand-computed fixture: MRR on 31 July 2026 is A 150 + B 50 + C 60 +
    # D 40 + E 240 + G 30 (its trial ended 15 July) = 570.00. Committed on 31 July 2027: E cancelled
    # (1 August), A at 200.00 from October, F's 70.00 from September: 200 + 50 + 60 + 40 + 70 + 30.
    cards = {k: page.locator(f"#kpi-{k} dd").inner_text() for k in ("mrr", "arr", "customers", "committed")}
    assert cards == {"mrr": "570.00 USD", "arr": "6840.00 USD", "customers": "6", "committed": "450.00 USD"}
    assert page.locator("#kpi-nrr dd").inner_text().endswith("%")
    # The cohort table is a heat map: a cell's background darkens with the revenue it retained.
    shades = page.locator("#cohort-table td.heat-cell").evaluate_all(
        "cells => cells.map(c => getComputedStyle(c).backgroundColor)")
    assert len(shades) > 5 and len(set(shades)) > 1, shades
    assert page.evaluate(OVERFLOW) <= 0
    assert _saved(screenshot(page, "revenue-page-1280.png"))


def test_a_tooltip_shows_the_reports_figure(browser: Any, base_url: str) -> None:
    page = _open(browser, base_url, 1280)
    canvas = page.locator("#chart-mrr")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    # July is the last point: 570.00.
    x, y = page.evaluate("""() => { const c = Chart.getChart(document.getElementById('chart-mrr'));
                                    const p = c.getDatasetMeta(0).data.at(-1); return [p.x, p.y]; }""")
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_function("() => Chart.getChart(document.getElementById('chart-mrr')).tooltip.opacity > 0")
    tooltip = page.evaluate("""() => { const t = Chart.getChart(document.getElementById('chart-mrr')).tooltip;
                                       return {title: t.title, lines: t.body.flatMap(b => b.lines)}; }""")
    assert tooltip == {"title": ["2026-07"], "lines": ["MRR: 570.00"]}


def test_the_page_at_390px(browser: Any, base_url: str) -> None:
    page = _open(browser, base_url, 390)
    _check_tables(page)
    _check_charts(page)
    assert page.evaluate(OVERFLOW) <= 0, "the page scrolls sideways at 390 px"
    # The wide bridge table keeps its columns and scrolls inside its own box.
    wrap = page.locator("#bridge-table").locator("xpath=..").evaluate(
        "w => ({scroll: w.scrollWidth, client: w.clientWidth, overflow: getComputedStyle(w).overflowX})")
    assert wrap["scroll"] > wrap["client"] and wrap["overflow"] == "auto", wrap
    # Every card and chart fits the screen.
    for box in page.locator(".card-fig, .chart-panel").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().right)"):
        assert box <= 390
    assert _saved(screenshot(page, "revenue-page-390.png"))


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_downloads_equal_the_api(browser: Any, base_url: str, page_app: Flask, users: dict[str, str]) -> None:
    page = _open(browser, base_url, 1280)
    bridge = _api(page_app, users, f"/api/revenue/bridge?{QUERY}").get_json()
    with page.expect_download() as download:
        page.locator("#bridge-head a.csv").click()
    rows = _rows(Path(download.value.path()).read_text())
    assert [r["month"] for r in rows] == [m["month"] for m in bridge["months"]]
    for got, want in zip(rows, bridge["months"], strict=True):
        assert {k: got[k] for k in want} == {k: "" if v is None else str(v) for k, v in want.items()}
    # Reactivation is in the download: B came back in April 2026.
    assert [r["reactivation"] for r in rows if r["month"] == "2026-04-01"] == ["50.00"]
    # Every chart and table links to its endpoint with the page's range and currency as CSV.
    links = page.locator("a.csv").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert len(links) == len(CHARTS) + len(TABLES_ON_PAGE) + 1  # and the headline figures
    for link in links:
        query = parse_qs(urlsplit(link).query)
        assert {k: query[k] for k in (*RANGE, "format")} == {**{k: [v] for k, v in RANGE.items()}, "format": ["csv"]}
        response = page.request.get(f"{base_url}{link}")
        assert response.status == 200 and response.headers["content-type"].startswith("text/csv"), link
    churn = page.request.get(f"{base_url}{page.locator('#churn-head a.csv').get_attribute('href')}").text()
    assert [(r["customer_id"], r["churn_on"], r["mrr"]) for r in _rows(churn)] == [("cus_e", "2026-08-01", "240.00")]


def test_a_customer_is_one_click_from_the_top_customers(browser: Any, base_url: str, page_app: Flask,
                                                        users: dict[str, str]) -> None:
    page = _open(browser, base_url, 1280)
    first = page.locator("#top-customers tbody tr").first
    assert first.locator("td").nth(3).inner_text() == "300.00"  # A's invoice, all recognised in range
    first.get_by_role("link").click()
    page.wait_for_url("**/revenue/customers/cus_a?*")
    page.wait_for_function("() => Chart.getChart(document.getElementById('chart-customer'))")
    axes = page.evaluate(AXES, "chart-customer")
    assert axes["x"] == "Month" and axes["y"] == "Revenue (USD)", axes
    assert page.locator("#kpi-customer-net dd").inner_text() == "300.00 USD"
    months = page.locator("#customer-months").evaluate(MISALIGNED)
    assert months["bad"] == [] and months["rows"] == 9
    api = _api(page_app, users, f"/api/revenue/customers/cus_a?{QUERY}").get_json()
    # 300.00 for 1 January to 1 April 2026 (90 days) by days: 31, 28 and 31 of them.
    assert [(m["month"], m["net"]) for m in api["months"] if m["net"] != "0.00"] == [
        ("2026-01-01", "103.34"), ("2026-02-01", "93.33"), ("2026-03-01", "103.33")]  # a tie: the cent goes first
    with page.expect_download() as download:
        page.locator(".section-head a.csv").click()
    rows = _rows(Path(download.value.path()).read_text())
    assert [(r["month"], r["net"], r["gross"]) for r in rows] == [
        (m["month"], m["net"], m["gross"]) for m in api["months"]]


def test_the_range_and_currency_controls(browser: Any, base_url: str) -> None:
    page = _open(browser, base_url, 1280)
    page.get_by_label("From").fill("2026-03-01")
    page.get_by_label("Currency").fill("EUR")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/revenue?start=2026-03-01*")
    page.wait_for_function("() => [...document.querySelectorAll('canvas')].every(c => Chart.getChart(c))")
    # No EUR rate in this warehouse: the page says so, and every download asks for EUR too.
    assert "No exchange rate to EUR for USD" in page.locator("[role=alert]").inner_text()
    assert page.evaluate(AXES, "chart-mrr")["datasets"] == [["MRR", 5]]
    assert "EUR" in page.evaluate(AXES, "chart-mrr")["y"]
    for link in page.locator("a.csv").evaluate_all("links => links.map(a => a.getAttribute('href'))"):
        query = parse_qs(urlsplit(link).query)
        assert (query["start"], query["currency"]) == (["2026-03-01"], ["eur"]), link


def test_the_customer_endpoint(warehouse_app: Flask, users: dict[str, str]) -> None:
    page_app = warehouse_app  # both databases: the history is SQL over the revenue schedule
    body = _api(page_app, users, f"/api/revenue/customers/cus_c?{QUERY}").get_json()
    assert (body["name"], body["net"], body["gross"], len(body["months"])) == ("Customer c", "240.00", "240.00", 9)
    csv_body = _api(page_app, users, f"/api/revenue/customers/cus_c?{QUERY}&format=csv").get_data(as_text=True)
    assert [(r["month"], r["net"]) for r in _rows(csv_body)] == [(m["month"], m["net"]) for m in body["months"]]
    # Each top customer's history adds up to its row in the top-customers table, to the cent.
    top = _api(page_app, users, f"/api/revenue/top-customers?{QUERY}").get_json()["customers"]
    assert [(c["customer_id"], c["net"]) for c in top] == [("cus_a", "300.00"), ("cus_c", "240.00"),
                                                           ("cus_b", "30.00")]
    for c in top:
        own = _api(page_app, users, f"/api/revenue/customers/{c['customer_id']}?{QUERY}").get_json()
        assert (own["net"], own["gross"]) == (c["net"], c["gross"])
    http = page_app.test_client()
    missing = http.get(f"/api/revenue/customers/cus_nobody?{QUERY}", headers=auth(users["viewer"]))
    assert missing.status_code == 404 and "cus_nobody" in missing.get_json()["error"]
    assert http.get(f"/api/revenue/customers/cus_c?{QUERY}").status_code == 401
    page = http.get(f"/revenue/customers/cus_nobody?{QUERY}", headers=auth(users["viewer"]))
    assert page.status_code == 404 and "cus_nobody" in page.get_data(as_text=True)


def _saved(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 10_000
