"""Order forms as they really arrive (issue 17 #1–#5, #7, #9), through the PandaDoc sandbox, the
signed webhook, the intake workflow on a real worker and the test's database.

Each test completes a document the way a sales rep might have filled it in and checks the row:
read exactly, or kept in needs review with the reason — never wrong money in state New.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import select
from temporalio import activity

from activities.intake import DocumentRow, IntakeActivities, RowResult, build
from domain.plan_input import INTAKE_FAILURE_KEY
from settings import Settings
from store.db import unit_of_work
from store.models import Plan
from store.plans import plan_to_json
from tests.intake.conftest import IntakeStack

# A row must appear within this; the old intake retried a crash forever and never made one.
ROW_WITHIN_SECONDS = 30


class FaultyRows:
    """The real row activity, with a bug or an outage injected for chosen companies: a document
    from "Crash Bug Co" fails the same way every time (like a float amount did on the old code);
    one from "Flaky Db Co" fails twice (a database restart) and then goes through."""

    def __init__(self, real: IntakeActivities) -> None:
        self.real = real
        self.attempts: Counter[str] = Counter()
        self._lock = threading.Lock()

    @activity.defn(name="intake.create_row_from_document")
    def create_row_from_document(self, row: DocumentRow) -> RowResult:
        company = next((t.get("value") for t in row.details.get("tokens") or [] if t.get("name") == "Client.Company"),
                       None)
        with self._lock:
            self.attempts[str(company)] += 1
            attempt = self.attempts[str(company)]
        if company == "Crash Bug Co":
            raise TypeError("unsupported operand type(s) for +: 'float' and 'str'")
        if company == "Flaky Db Co" and attempt <= 2:
            raise RuntimeError("the database is restarting")
        return self.real.create_row_from_document(row)


@pytest.fixture
def faulty_rows() -> dict[str, FaultyRows]:
    return {}


@pytest.fixture
def intake_activities(faulty_rows: dict[str, FaultyRows]) -> Callable[[Settings], list[Callable[..., Any]]]:
    def activities(settings: Settings) -> list[Callable[..., Any]]:
        faulty = FaultyRows(IntakeActivities(settings))
        faulty_rows["rows"] = faulty
        return [faulty.create_row_from_document if getattr(a, "__name__", "") == "create_row_from_document" else a
                for a in build(settings)]

    return activities


async def _row(stack: IntakeStack, **values: Any) -> dict[str, Any]:
    document_id = stack.complete_document(**values)
    result = await asyncio.wait_for(stack.intake_result(document_id), ROW_WITHIN_SECONDS)
    assert result.created is True
    with unit_of_work(stack.settings.database_url) as session:
        plan = session.scalar(select(Plan).where(Plan.pandadoc_id == document_id))
        assert plan is not None
        return plan_to_json(plan) | {"pandadoc_details": plan.pandadoc_details}


# ------------------------------------------------------------ #1 European amounts

async def test_issue17_1_a_eur_form_with_european_amounts_is_read_exactly(intake_stack: IntakeStack) -> None:
    row = await _row(intake_stack, currency="EUR", credit_amount="150.000,00", price="€120.000", discount="20")
    assert (row["state"], row["currency"], row["credit_amount"], row["price"]) == ("new", "eur", "150000.00",
                                                                                   "120000.00")


async def test_issue17_1_an_amount_that_reads_two_ways_goes_to_review(intake_stack: IntakeStack) -> None:
    # "120.000" on a USD form: 120,000 written the European way, or 120 with a stray decimal?
    row = await _row(intake_stack, currency="USD", credit_amount="150,000.00", price="120.000")
    assert row["state"] == "needs_review"
    assert "could mean 120000 or 120.000 USD" in row["errors"]["price"]
    assert row["errors"]["_raw"]["price"] == "120.000"


async def test_issue17_1_the_forms_locale_settles_the_reading(intake_stack: IntakeStack) -> None:
    row = await _row(intake_stack, currency="EUR", credit_amount="€150,000", price="€120,000", locale="en-IE")
    assert (row["state"], row["price"], row["credit_amount"]) == ("new", "120000.00", "150000.00")


# ------------------------------------------------------------ #2 day-first dates

async def test_issue17_2_a_day_first_date_on_a_gbp_form_goes_to_review(intake_stack: IntakeStack) -> None:
    row = await _row(intake_stack, currency="GBP", start_date="01/12/2026")
    assert row["state"] == "needs_review" and row["start_date"] is None
    assert "1 December 2026 or 12 January 2026" in row["errors"]["start_date"]


async def test_issue17_2_the_locale_or_an_unambiguous_form_of_the_date_is_read(intake_stack: IntakeStack) -> None:
    by_locale = await _row(intake_stack, currency="GBP", start_date="01/12/2026", locale="en-GB")
    iso_time = await _row(intake_stack, currency="GBP", start_date="2026-12-01T00:00:00.000Z")
    spelled = await _row(intake_stack, currency="EUR", start_date="1 Dec 2026")
    dotted = await _row(intake_stack, currency="EUR", start_date="01.12.2026")
    for row in (by_locale, iso_time, spelled, dotted):
        assert (row["state"], row["start_date"]) == ("new", "2026-12-01"), row["errors"]


# ------------------------------------------------------------ #3 discount 0.2

async def test_issue17_3_a_fractional_discount_is_flagged_on_the_discount(intake_stack: IntakeStack) -> None:
    row = await _row(intake_stack, discount="0.2", credit_amount="120000.00", price="96000.00")
    assert row["state"] == "needs_review"
    assert row["warnings"] == {"discount": "0.2 looks like a fraction; did you mean 20%? Write the discount as a "
                                           "percentage, or confirm 0.2% is right."}


# ------------------------------------------------------------ #4 several pricing lines

async def test_issue17_4_the_price_comes_from_the_credit_line_and_other_lines_wait_for_a_person(
        intake_stack: IntakeStack) -> None:
    row = await _row(intake_stack, credit_amount="120000.00", price="96000.00",
                     extra_lines=[{"name": "Platform fee", "sku": "platform-fee", "price": "12000.00"}])
    assert row["pandadoc_details"]["grand_total"]["amount"] == "108000.00"  # what the old intake billed
    assert row["price"] == "96000.00" and row["credit_amount"] == "120000.00"
    assert row["state"] == "needs_review"
    assert "Platform fee (12000.00)" in row["warnings"]["price"]
    assert row["errors"]["_raw"]["_other_lines"] == [
        {"name": "Platform fee", "sku": "platform-fee", "qty": "1", "price": "12000.00", "total": "12000.00"}]


# ------------------------------------------------------------ #5 contradicting currency sign

async def test_issue17_5_a_dollar_amount_on_a_eur_form_is_an_error(intake_stack: IntakeStack) -> None:
    row = await _row(intake_stack, currency="EUR", credit_amount="150.000,00", price="$120,000")
    assert row["state"] == "needs_review"
    assert "'$120,000' is written with '$', which is not EUR" in row["errors"]["price"]


# ------------------------------------------------------------ #7 failed fields stay empty

async def test_issue17_7_a_currency_that_failed_is_not_usd_and_its_amounts_are_not_dollars(
        intake_stack: IntakeStack) -> None:
    row = await _row(intake_stack, currency="Euro", term="forever")
    assert row["state"] == "needs_review"
    assert {"currency", "price", "credit_amount", "term_months"} <= set(row["errors"])
    assert "until the plan's currency is known" in row["errors"]["price"]


# ------------------------------------------------------------ #9 JSON numbers and bounded retries

async def test_issue17_9_a_json_number_amount_is_read_exactly(intake_stack: IntakeStack) -> None:
    row = await _row(intake_stack, credit_amount=120000.0, price=96000.0, discount=20)
    assert row["pandadoc_details"]["grand_total"]["amount"] == 96000.0
    assert (row["state"], row["price"], row["credit_amount"], row["discount"]) == ("new", "96000.00", "120000.00",
                                                                                   "20")


async def test_issue17_9_a_json_number_that_is_not_exact_money_goes_to_review(intake_stack: IntakeStack) -> None:
    row = await _row(intake_stack, price=96000.1234)
    assert row["state"] == "needs_review" and "more than 2 decimal places" in row["errors"]["price"]


async def test_issue17_9_an_intake_failing_the_same_way_stops_and_leaves_a_needs_review_row(
        intake_stack: IntakeStack, faulty_rows: dict[str, FaultyRows]) -> None:
    row = await _row(intake_stack, company_name="Crash Bug Co")
    assert faulty_rows["rows"].attempts["Crash Bug Co"] == 1  # a bug is not retried
    assert row["state"] == "needs_review"
    assert "TypeError: unsupported operand type(s) for +: 'float' and 'str'" in row["errors"]["document"]
    assert row["pandadoc_details"][INTAKE_FAILURE_KEY].startswith("TypeError")
    original = row["pandadoc_details"]["original_details"]
    assert original["tokens"][0] == {"name": "Client.Company", "value": "Crash Bug Co"}


async def test_issue17_9_an_outage_is_retried_and_the_row_is_read_normally(
        intake_stack: IntakeStack, faulty_rows: dict[str, FaultyRows]) -> None:
    row = await _row(intake_stack, company_name="Flaky Db Co")
    assert faulty_rows["rows"].attempts["Flaky Db Co"] == 3
    assert (row["state"], row["company_name"], row["price"]) == ("new", "Flaky Db Co", "96000.00")


# ------------------------------------------------------------ the sandbox learns to edit a document

def test_the_sandbox_edits_a_completed_document_and_completes_it_again(pandadoc_sandbox: Any) -> None:
    document = pandadoc_sandbox.create_document()
    first = pandadoc_sandbox.complete(document["id"], send_webhook=False)["document"]
    edited = pandadoc_sandbox.edit_document(document["id"], send_webhook=False, price="120000.00")["document"]
    assert edited["id"] == document["id"] and edited["status"] == "document.completed"
    assert edited["grand_total"]["amount"] == "120000.00" and first["grand_total"]["amount"] == "96000.00"
    assert edited["date_completed"] >= first["date_completed"]
    # Over HTTP as well, left in draft this time.
    response = requests.post(f"{pandadoc_sandbox.url}/_sandbox/documents/{document['id']}/edit",
                             json={"values": {"price": "130000.00"}, "complete": False}, timeout=10)
    assert response.status_code == 200
    assert response.json()["document"]["status"] == "document.draft"
    assert response.json()["document"]["date_completed"] is None
    details = requests.get(f"{pandadoc_sandbox.url}/public/v1/documents/{document['id']}/details",
                           headers={"Authorization": f"API-Key {pandadoc_sandbox.api_key}"}, timeout=10).json()
    assert details["grand_total"]["amount"] == "130000.00"


async def test_an_edited_completed_document_is_delivered_again_with_a_new_event(intake_stack: IntakeStack) -> None:
    document_id = intake_stack.complete_document()
    first_event = intake_stack.sandbox.state.deliveries[document_id].event_id
    again = intake_stack.sandbox.edit_document(document_id, price="120000.00")
    assert again["webhook"]["status"] == 200 and again["webhook"]["event_id"] != first_event
