"""The table in headless Chromium: sign in, add and edit rows, disabled buttons, viewers, live status."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from settings import Settings
from store.db import unit_of_work
from store.models import Plan
from tests.web.browser import chromium, needs_chromium, screenshot, serve, sign_in

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture
def base_url(app: Flask) -> Iterator[str]:
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _page(browser: Any, width: int = 1280) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


def test_operator_adds_a_row_and_a_bad_edit_keeps_the_other_values(
    browser: Any, base_url: str, settings: Settings
) -> None:
    page = _page(browser)
    sign_in(page, base_url, "operator")
    page.get_by_role("link", name="Add a row").first.click()
    page.get_by_label("Company name").fill("Hooli")
    page.get_by_label("Customer email").fill("gavin@hooli")  # no top-level domain
    page.get_by_label("Credit amount").fill("120000.00")
    page.get_by_label("Discount (%)").fill("20")
    page.get_by_label("Price", exact=True).fill("96000.00")
    page.get_by_label("Start date").fill("2030-12-01")
    page.get_by_label("Term", exact=True).fill("1 year")
    page.get_by_label("Session replay").check()
    page.get_by_role("button", name="Add row").click()
    # The error is next to the field, and nothing typed is lost.
    assert "is not an email address" in page.locator("#err-customer_email").inner_text()
    assert page.get_by_label("Company name").input_value() == "Hooli"
    assert page.get_by_label("Term", exact=True).input_value() == "1 year"
    assert page.get_by_label("Session replay").is_checked()
    assert page.evaluate("document.activeElement.id") == "problems"  # the summary takes focus
    page.get_by_label("Customer email").fill("gavin@hooli.example")
    page.get_by_role("button", name="Add row").click()
    page.wait_for_url(f"{base_url}/plans/*")
    assert "Row " in page.locator(".flash-ok").inner_text()
    plan_id = int(page.url.rsplit("/", 1)[1])

    # An edit with a bad value: the field error shows and the other values stay as typed.
    page.get_by_label("Company name").fill("Hooli XYZ")
    page.get_by_label("Payment terms (days)").fill("400")
    page.get_by_role("button", name="Save changes").click()
    assert "outside 0–365 days" in page.locator("#err-payment_terms_days").inner_text()
    assert page.get_by_label("Company name").input_value() == "Hooli XYZ"
    assert page.get_by_label("Payment terms (days)").input_value() == "400"
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None and plan.company_name == "Hooli" and plan.payment_terms_days == 30
    screenshot(page, "row-page-edit-error.png")

    page.get_by_label("Payment terms (days)").fill("45")
    page.get_by_role("button", name="Save changes").click()
    assert "saved" in page.locator(".flash-ok").inner_text()
    assert page.get_by_label("Company name").input_value() == "Hooli XYZ"
    assert "edit row" in page.locator("table.timeline").inner_text()


def test_disabled_button_explains_itself_on_hover_and_on_focus(
    browser: Any, base_url: str, add_plan: Callable[..., int]
) -> None:
    plan_id = add_plan()
    page = _page(browser)
    sign_in(page, base_url, "operator")
    button = page.locator(f'#plan-{plan_id} button[data-action="create_invoice"]')
    tip = page.locator(f"#why-{plan_id}-create_invoice")
    assert button.get_attribute("aria-disabled") == "true"
    reason = button.get_attribute("title")
    assert reason and "customer" in reason.lower()
    # The next action is in the row; the rest are one "More" away, by keyboard: Tab, Enter, Tab.
    assert not button.is_visible()
    page.locator(f'#plan-{plan_id} button[data-action="create_customer"]').focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.action") == "create_invoice"
    assert tip.is_visible() and tip.inner_text() == reason
    page.mouse.move(0, 0)
    button.blur()
    assert not tip.is_visible()
    button.hover()
    assert tip.is_visible()
    # Clicking it does nothing.
    url = page.url
    button.click(force=True)  # Playwright itself treats aria-disabled as not clickable
    assert page.url == url
    screenshot(page, "table-disabled-reason.png")


def test_viewer_sees_no_enabled_action(browser: Any, base_url: str, add_plan: Callable[..., int]) -> None:
    add_plan()
    add_plan(pandadoc_id="pd-2", company_name="Monthly Co", payment_schedule="monthly",
             stripe_customer_id_existing="cus_Existing1")
    page = _page(browser)
    sign_in(page, base_url, "viewer")
    buttons = page.locator(".actions button")
    assert buttons.count() >= 8
    for i in range(buttons.count()):
        assert buttons.nth(i).get_attribute("aria-disabled") == "true"
    assert page.locator(".actions form").count() == 0
    assert page.locator('.products input[type="checkbox"]:not([disabled])').count() == 0
    assert page.get_by_role("link", name="Add a row").count() == 0


def test_state_changes_appear_without_a_reload(
    browser: Any, base_url: str, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan()
    page = _page(browser)
    sign_in(page, base_url, "viewer")
    page.evaluate("window.__marker = 'same page'")
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        plan.state, plan.invoice_id = "awaiting_payment", "in_LiveUpdate"
    page.locator(f"#plan-{plan_id} .badge").filter(has_text="awaiting payment").wait_for()
    assert "in_LiveUpdate" in page.locator(f"#plan-{plan_id}").inner_text()
    assert page.evaluate("window.__marker") == "same page"


def test_table_is_usable_at_800px(browser: Any, base_url: str, add_plan: Callable[..., int]) -> None:
    for i in range(3):
        add_plan(pandadoc_id=f"pd-{i}", company_name=f"Narrow {i}")
    page = _page(browser, width=800)
    sign_in(page, base_url, "operator")
    # The page itself does not scroll sideways; the table scrolls inside its own region.
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    assert page.get_by_role("link", name="Narrow 0").is_visible()
    screenshot(page, "table-800px.png")
    page.get_by_role("link", name="Narrow 0").click()
    page.get_by_label("Company name").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    # Focus order follows reading order: status and actions first, then the fields.
    page.locator("#live button").first.focus()
    assert page.evaluate("document.activeElement.compareDocumentPosition(document.getElementById('in-company_name'))"
                         " & Node.DOCUMENT_POSITION_FOLLOWING")
    screenshot(page, "row-page-800px.png")
    page.get_by_role("link", name="Table").first.click()
    page.set_viewport_size({"width": 1280, "height": 900})
    screenshot(page, "table-1280px.png")
