"""A day in the table (issue 17 #11–#16) in headless Chromium, at 1280 px and 390 px, partly by
keyboard only: fixing a needs-review row from the order form's own text, confirming a row with
only a warning, honest messages, new rows and search, focus after an action, product boxes saved
in place, a phone layout without sideways scrolling. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from settings import Settings
from store.db import unit_of_work
from store.models import Plan
from store.plans import create_plan
from tests.web.browser import chromium, needs_chromium, screenshot, serve, sign_in
from tests.web.conftest import VALID_PLAN

pytestmark = [pytest.mark.browser, needs_chromium]

DETAILS = {"id": "pd-review-1", "name": "Order Form - Euro Co", "date_modified": "2026-11-20T10:00:00Z",
           "tokens": [{"name": "Client.Company", "value": "Euro Co"}]}


@pytest.fixture
def base_url(app: Flask) -> Iterator[str]:
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _page(browser: Any, width: int = 1280) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


def _review_row(settings: Settings, **values: Any) -> int:
    with unit_of_work(settings.database_url) as s:
        plan, checked = create_plan(s, {**VALID_PLAN, **values}, actor="pandadoc", source="pandadoc",
                                    keep_invalid=True, pandadoc_details=DETAILS)
        assert plan is not None and plan.state == "needs_review", checked
        return plan.id


def _stored(settings: Settings, plan_id: int) -> Plan:
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        s.expunge(plan)
        return plan


def _tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching `selector` has focus: keyboard only, no clicks."""
    for _ in range(limit):
        if page.evaluate(f"document.activeElement && document.activeElement.matches({selector!r})"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


# ------------------------------------------------------------------ #11 the needs-review page

def test_a_needs_review_row_is_fixed_from_the_order_forms_text_by_keyboard(
        browser: Any, base_url: str, settings: Settings) -> None:
    plan_id = _review_row(settings, pandadoc_id="pd-review-1", company_name="Euro Co", currency="Euro",
                          _other_lines=[{"name": "Platform fee", "sku": "platform-fee", "total": "12000.00"}])
    page = _page(browser)
    sign_in(page, base_url, "operator")
    page.goto(f"{base_url}/plans/{plan_id}")
    review = page.locator("#review")
    # The error sits beside its field, and the field holds what the order form said.
    assert "'Euro' is not a currency we can bill in" in page.locator("#err-currency").inner_text()
    assert "until the plan's currency is known" in page.locator("#err-price").inner_text()
    assert page.get_by_label("Currency").input_value() == "Euro"
    assert page.get_by_label("Price", exact=True).input_value() == "96000.00"  # PandaDoc's text, stored empty
    assert "Platform fee: 12000.00" in review.inner_text()
    assert review.get_by_role("link", name="Open the order form in PandaDoc").get_attribute("href").endswith(
        "/documents/pd-review-1")
    review.locator("summary", has_text="What PandaDoc sent").click()
    assert "Order Form - Euro Co" in review.locator("pre.details").inner_text()
    screenshot(page, "review-row-1280px.png")

    # Keyboard only: to the currency field, type, save with Enter.
    page.locator("body").focus()
    _tab_to(page, "#in-currency")
    page.keyboard.press("Control+A")
    page.keyboard.type("EUR")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    flash = page.locator(".flash-ok").inner_text()
    assert f"Row {plan_id} saved and out of review" in flash, flash
    stored = _stored(settings, plan_id)
    assert (stored.state, stored.currency, stored.price, stored.credit_amount) == ("new", "eur", 9_600_000,
                                                                                   12_000_000)


def test_a_row_with_only_a_warning_is_confirmed_directly(browser: Any, base_url: str, settings: Settings) -> None:
    plan_id = _review_row(settings, pandadoc_id="pd-fraction", discount="0.2")
    page = _page(browser)
    sign_in(page, base_url, "operator")
    page.goto(f"{base_url}/plans/{plan_id}")
    assert "looks like a fraction" in page.locator("#warn-discount").inner_text()
    page.get_by_role("button", name="Confirm the row as it is").click()
    page.wait_for_load_state()
    assert "out of review" in page.locator(".flash-ok").inner_text()
    assert _stored(settings, plan_id).state == "new"


# ------------------------------------------------------------------ #12, #14 messages and keyboard

def test_keyboard_only_a_refused_click_reads_as_refused_and_focus_returns_to_the_row(
        browser: Any, base_url: str, add_plan: Callable[..., int], settings: Settings) -> None:
    plan_id = add_plan(pandadoc_id="pd-keys", company_name="Keys Co", posthog_org_id="org-keys",
                       customer_email="keys@keys.example")
    page = _page(browser)
    sign_in(page, base_url, "operator")
    row = page.locator(f"#plan-{plan_id}")
    # Few tab stops per row: the company, the next action, "More", the products.
    stops = page.evaluate(
        """id => Array.from(document.querySelectorAll(`#plan-${id} a, #plan-${id} button, #plan-${id} summary`))
              .filter(el => el.checkVisibility() && el.tabIndex >= 0).length""", plan_id)
    assert stops <= 4, stops
    page.evaluate("window.__same_page = 'yes'")

    # Product boxes by keyboard, each saved in place: no page load per box.
    page.locator("body").focus()
    _tab_to(page, f"#plan-{plan_id} .products-pick summary")
    page.keyboard.press("Enter")
    _tab_to(page, f'#plan-{plan_id} input[value="surveys"]')
    page.keyboard.press("Space")
    row.locator(".products-status").filter(has_text="saved").wait_for()
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # the next box
    row.locator(".products-status").filter(has_text=",").wait_for()
    assert page.evaluate("window.__same_page") == "yes"
    assert "surveys" in (_stored(settings, plan_id).products or [])

    # A stale page: the row went to review after it was drawn. The click is refused, says so as an
    # error (never a success), and keyboard focus is back on the row's button.
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        plan.state, plan.errors = "needs_review", {"customer_email": "Check the email with the customer."}
    _tab_to(page, f'#plan-{plan_id} button[data-action="create_customer"]')
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert page.locator(".flash-ok").count() == 0
    error = page.locator(".flash-error")
    assert error.get_attribute("role") == "alert"
    assert f"Create Stripe Customer was not done on row {plan_id}: Fix the row first" in error.inner_text()
    assert page.evaluate("document.activeElement.closest('tr') && document.activeElement.closest('tr').id") == \
        f"plan-{plan_id}"
    assert page.evaluate("document.activeElement.dataset.action") == "create_customer"
    screenshot(page, "table-refused-click-1280px.png")


def test_a_possible_duplicate_is_warned_before_create_stripe_customer(
        browser: Any, base_url: str, add_plan: Callable[..., int]) -> None:
    first = add_plan(pandadoc_id="pd-dup-1", posthog_org_id="org-dup", customer_email="one@dup.example")
    second = add_plan(pandadoc_id="pd-dup-2", posthog_org_id="org-dup", customer_email="two@dup.example")
    page = _page(browser)
    sign_in(page, base_url, "operator")
    warning = page.locator(f"#dup-{second}")
    assert warning.inner_text().startswith(f"Possible duplicate of #{first}")
    assert warning.get_attribute("title").startswith(f"Possible duplicate of row {first} (the same PostHog org id "
                                                     f"org-dup).")
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", answer)
    url = page.url
    page.locator(f'#plan-{second} button[data-action="create_customer"]').click()
    assert asked and f"Possible duplicate of row {first}" in asked[0]
    assert page.url == url  # dismissed: nothing was sent
    # The row page says it too, and asks the same before its button sends anything.
    page.goto(f"{base_url}/plans/{second}")
    assert page.locator("#duplicate-warning").inner_text().startswith(f"Possible duplicate of row {first}")
    page.locator('#live button[data-action="create_customer"]').click()
    assert len(asked) == 2 and asked[1].endswith("Create a Stripe customer anyway?")
    assert page.url == f"{base_url}/plans/{second}"


# ------------------------------------------------------------------ #13 live rows and search

def test_new_rows_appear_live_and_search_finds_any_id(
        browser: Any, base_url: str, add_plan: Callable[..., int], settings: Settings) -> None:
    add_plan(pandadoc_id="pd-old", company_name="Old Co")
    page = _page(browser)
    sign_in(page, base_url, "viewer")
    page.evaluate("window.__same_page = 'yes'")
    fresh = add_plan(pandadoc_id="pd-new-live", company_name="Brand New Co", posthog_org_id="org-brand-new")
    page.locator(f"#plan-{fresh}").wait_for()
    assert page.locator("tbody tr[data-plan]").first.get_attribute("id") == f"plan-{fresh}"
    assert "1 row added" in page.locator("#live-note").inner_text()
    assert page.evaluate("window.__same_page") == "yes"

    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, fresh)
        assert plan is not None
        plan.stripe_customer_id, plan.invoice_id = "cus_SearchMe1", "in_SearchMe2"
    for query in ("org-brand-new", "pd-new-live", "cus_SearchMe1", "in_SearchMe2"):
        page.goto(f"{base_url}/?q={query}")
        ids = page.locator("tbody tr[data-plan]").evaluate_all("rows => rows.map(r => r.id)")
        assert ids == [f"plan-{fresh}"], (query, ids)


# ------------------------------------------------------------------ #15, #16 phone and looks

def test_at_390px_the_table_and_the_row_page_work_without_sideways_scrolling(
        browser: Any, base_url: str, add_plan: Callable[..., int], settings: Settings) -> None:
    plan_id = add_plan(pandadoc_id="pd-phone", company_name="Phone Co")
    other = add_plan(pandadoc_id="pd-phone-2", company_name="Applied Co")
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, other)
        assert plan is not None
        plan.state = "credit_applied"
    page = _page(browser, width=390)
    sign_in(page, base_url, "operator")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The amount with its separators and currency.
    assert "96,000.00 USD" in page.locator(f"#plan-{plan_id}").inner_text()
    # The "Credit applied" badge has its own colours.
    colour = page.locator(f"#plan-{other} .badge").evaluate("el => getComputedStyle(el).backgroundColor")
    assert colour == "rgb(220, 241, 228)", colour
    # A disabled button's reason shows on focus, whole, inside the screen.
    page.locator(f"#plan-{plan_id} .more-actions summary").click()
    button = page.locator(f'#plan-{plan_id} button[data-action="create_invoice"]')
    button.focus()
    tip = page.locator(f"#why-{plan_id}-create_invoice")
    assert tip.is_visible()
    box = tip.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "table-390px.png")

    page.goto(f"{base_url}/plans/{plan_id}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    fields = page.locator("#fields-h").bounding_box()
    timeline = page.locator("table.timeline").bounding_box()
    assert fields is not None and timeline is not None and fields["y"] < timeline["y"]
    screenshot(page, "row-page-390px.png")


def test_read_only_fields_look_read_only(browser: Any, base_url: str, add_plan: Callable[..., int]) -> None:
    plan_id = add_plan(pandadoc_id="pd-read")
    page = _page(browser)
    sign_in(page, base_url, "viewer")
    page.goto(f"{base_url}/plans/{plan_id}")
    field = page.get_by_label("Company name")
    assert field.get_attribute("readonly") is not None
    style = field.evaluate("el => [getComputedStyle(el).backgroundColor, getComputedStyle(el).borderTopStyle]")
    assert style == ["rgb(236, 239, 242)", "dashed"], style
    screenshot(page, "row-page-read-only-1280px.png")
