"""The PandaDoc field map: configuration, not code; the default matches the sandbox's template."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from domain.pandadoc_mapping import FieldMapError, load_field_map, map_details, parse_field_map
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
