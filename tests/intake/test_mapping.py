"""The PandaDoc field map: configuration, not code; the default matches the sandbox's template."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from domain.pandadoc_mapping import FieldMapError, failed_intake_details, load_field_map, map_details, parse_field_map
from domain.plan_input import validate_plan
from sandbox.pandadoc.template import demo_values, details
from settings import PROJECT_ROOT


def _details(**overrides: object) -> dict[str, object]:
    values = {**demo_values(date(2026, 11, 1)), **overrides}
    return details("docDemo123", values, status="document.completed", created="2026-11-01T00:00:00Z",
                   modified="2026-11-02T00:00:00Z", completed="2026-11-02T00:00:00Z")


def test_the_default_map_reads_every_field_of_the_demo_order_form() -> None:
    field_map = load_field_map(str(PROJECT_ROOT / "config" / "pandadoc_field_map.toml"))
    data = map_details(_details(), field_map)
    assert data == {
        "pandadoc_id": "docDemo123", "company_name": "Hedgehog Labs", "customer_email": "billing@hedgehog.example",
        "credit_amount": "120000.00", "discount": "20", "price": "96000.00", "currency": "USD",
        "start_date": "2026-11-15", "term_months": "12 months", "posthog_org_id": "org-hedgehog",
        "payment_schedule": "upfront", "credit_start": "immediately", "payment_terms_days": "30",
        "products": ["product_analytics", "session_replay"],
    }
    checked = validate_plan(data)
    assert checked.errors == {} and checked.warnings == {}
    assert checked.values["price"] == 9_600_000 and checked.values["term_months"] == 12


def test_a_template_change_is_a_config_change(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text('[fields]\ncompany_name = ["token:Customer.LegalName", "token:Client.Company"]\n'
                    'price = "pricing:total"\n')
    field_map = load_field_map(str(path))
    detail = _details()
    assert map_details(detail, field_map) == {"pandadoc_id": "docDemo123", "company_name": "Hedgehog Labs",
                                              "price": "96000.00"}
    detail["tokens"].append({"name": "Customer.LegalName", "value": "Hedgehog Labs GmbH"})  # type: ignore[attr-defined]
    assert map_details(detail, field_map)["company_name"] == "Hedgehog Labs GmbH"


@pytest.mark.parametrize(("table", "message"), [
    ({}, "has no [fields] table"),
    ({"fields": {"colour": "token:X"}}, "maps 'colour', which is not a plan field"),
    ({"fields": {"company_name": "tokens:X"}}, "has the source 'tokens:X'"),
    ({"fields": {"company_name": "token:"}}, "has the source 'token:'"),
])
def test_a_bad_field_map_is_refused_with_the_reason(table: dict[str, object], message: str) -> None:
    with pytest.raises(FieldMapError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_field_map(table)


def test_missing_values_are_left_out_for_validation_to_report() -> None:
    field_map = load_field_map(str(PROJECT_ROOT / "config" / "pandadoc_field_map.toml"))
    detail = _details()
    detail["recipients"] = []
    detail["tokens"] = [t for t in detail["tokens"] if t["name"] != "Contract.StartDate"]  # type: ignore[attr-defined]
    data = map_details(detail, field_map)
    assert "customer_email" not in data and "start_date" not in data
    assert set(validate_plan(data).errors) == {"customer_email", "start_date"}


DEFAULT_MAP = str(PROJECT_ROOT / "config" / "pandadoc_field_map.toml")


def test_issue17_4_several_pricing_lines_price_comes_from_the_credit_line_and_the_rest_are_listed() -> None:
    detail = _details(extra_lines=[{"name": "Platform fee", "sku": "platform-fee", "price": "12000.00"},
                                   {"name": "Premium support", "price": "6000.00", "qty": 2, "total": "12000.00"}])
    assert detail["grand_total"] == {"amount": "120000.00", "currency": "USD"}  # type: ignore[comparison-overlap]
    data = map_details(detail, load_field_map(DEFAULT_MAP))
    assert data["price"] == "96000.00" and data["credit_amount"] == "120000.00"
    assert data["_other_lines"] == [
        {"name": "Platform fee", "sku": "platform-fee", "qty": "1", "price": "12000.00", "total": "12000.00"},
        {"name": "Premium support", "qty": "2", "price": "6000.00", "total": "12000.00"},
    ]
    checked = validate_plan(data)
    assert checked.values["price"] == 9_600_000 and checked.errors == {}
    assert "Platform fee (12000.00); Premium support (12000.00)" in checked.warnings["price"]


def test_issue17_4_the_credit_line_can_be_found_by_name_and_an_unknown_one_leaves_the_price_empty(
        tmp_path: Path) -> None:
    detail = _details(extra_lines=[{"name": "Platform fee", "price": "12000.00"}])
    for item in detail["pricing"]["tables"][0]["items"]:  # type: ignore[index]
        item["sku"] = ""
    path = tmp_path / "map.toml"
    path.write_text('[fields]\nprice = ["pricing:total", "grand_total:amount"]\n[pricing]\nitem_name = "Prepaid"\n')
    assert map_details(detail, load_field_map(str(path)))["price"] == "96000.00"
    other = tmp_path / "other-map.toml"  # a new path: field maps are cached by path
    other.write_text('[fields]\nprice = ["pricing:total", "grand_total:amount"]\n[pricing]\nitem_name = "seats"\n')
    data = map_details(detail, load_field_map(str(other)))
    # Neither the credit line nor the grand total (credit + fee) is a price: a person decides.
    assert "price" not in data and [line["name"] for line in data["_other_lines"]] == [
        "PostHog prepaid credit", "Platform fee"]
    assert "price" in validate_plan(data).errors


def test_issue17_9_json_numbers_are_handed_over_as_their_exact_decimal_text() -> None:
    data = map_details(_details(price=96000.0, credit_amount=120000, discount=12.5, payment_terms_days=45),
                       load_field_map(DEFAULT_MAP))
    assert (data["price"], data["credit_amount"], data["discount"], data["payment_terms_days"]) == (
        "96000.0", "120000", "12.5", "45")
    assert validate_plan(data).values["price"] == 9_600_000
    inexact = map_details(_details(price=0.1 + 0.2), load_field_map(DEFAULT_MAP))
    assert inexact["price"] == "0.30000000000000004" and "price" in validate_plan(inexact).errors


def test_issue17_2_the_forms_locale_travels_with_the_data(tmp_path: Path) -> None:
    data = map_details(_details(locale="en-GB", currency="GBP", start_date="01/12/2026"), load_field_map(DEFAULT_MAP))
    assert data["_locale"] == "en-GB"
    assert validate_plan(data).values["start_date"] == date(2026, 12, 1)
    path = tmp_path / "map.toml"
    path.write_text('[fields]\nstart_date = "token:Contract.StartDate"\n[form]\ndefault_locale = "de-DE"\n')
    assert map_details(_details(), load_field_map(str(path)))["_locale"] == "de-DE"


def test_issue17_9_a_document_that_kept_failing_maps_to_a_row_naming_the_failure() -> None:
    stand_in = failed_intake_details("docDemo123", _details(price=float("nan")), "TypeError: boom")
    assert stand_in["original_details"]["grand_total"]["amount"] == "nan"  # kept, as text JSON can store
    data = map_details(stand_in, load_field_map(DEFAULT_MAP))
    assert data == {"pandadoc_id": "docDemo123", "_intake_failure": "TypeError: boom"}
    checked = validate_plan(data)
    assert "TypeError: boom" in checked.errors["document"] and "company_name" in checked.errors
