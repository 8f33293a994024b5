"""The demo order-form template: document details shaped like PandaDoc's
`GET /public/v1/documents/{id}/details`, filled from a few plain values.

`config/pandadoc_field_map.toml` reads exactly these tokens, fields, pricing columns and metadata.

Values are passed through as given, so a test can put a JSON number (96000.0) or a European
amount ("120.000,00") where PandaDoc would. `extra_lines` adds pricing lines beside the credit
(a platform fee …), which the grand total includes like PandaDoc's does; `locale` is written to
the document's metadata.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

PRODUCT_FIELDS = ("product_analytics", "session_replay", "feature_flags", "surveys", "data_warehouse",
                  "group_analytics")


def demo_values(today: date) -> dict[str, Any]:
    """A valid annual upfront contract starting in two weeks."""
    return {
        "name": "Order Form - Hedgehog Labs",
        "company_name": "Hedgehog Labs",
        "customer_email": "billing@hedgehog.example",
        "signer_first_name": "Hanna",
        "signer_last_name": "Hedge",
        "credit_amount": "120000.00",
        "discount": "20",
        "price": "96000.00",
        "currency": "USD",
        "start_date": (today + timedelta(days=14)).isoformat(),
        "term": "12 months",
        "posthog_org_id": "org-hedgehog",
        "payment_schedule": "upfront",
        "credit_start": "immediately",
        "payment_terms_days": "30",
        "stripe_customer_id": "",
        "products": ["product_analytics", "session_replay"],
    }


def details(document_id: str, values: dict[str, Any], *, status: str, created: str, modified: str,
            completed: str | None) -> dict[str, Any]:
    products = set(values.get("products") or [])
    metadata = {"posthog_org_id": values["posthog_org_id"]}
    if values.get("stripe_customer_id"):
        metadata["stripe_customer_id"] = values["stripe_customer_id"]
    if values.get("locale"):
        metadata["locale"] = values["locale"]
    extra_lines = [
        {"id": f"{document_id}-i{index + 2}", "sku": line.get("sku", ""), "name": line.get("name", "Other line"),
         "qty": line.get("qty", 1), "price": line["price"], "discount": {"type": "percent", "value": "0"},
         "custom_columns": {}, "total": line.get("total", line["price"])}
        for index, line in enumerate(values.get("extra_lines") or [])
    ]
    grand_total = values.get("grand_total", _sum([values["price"], *[line["total"] for line in extra_lines]]))
    return {
        "id": document_id,
        "name": values["name"],
        "status": status,
        "date_created": created,
        "date_modified": modified,
        "date_completed": completed,
        "expiration_date": None,
        "version": "2",
        "template": {"id": "tmpl_demo_order_form", "name": "PostHog Order Form"},
        "metadata": metadata,
        "tokens": [
            {"name": "Client.Company", "value": values["company_name"]},
            {"name": "Contract.StartDate", "value": values["start_date"]},
            {"name": "Contract.Term", "value": values["term"]},
            {"name": "Contract.PaymentTermsDays", "value": values["payment_terms_days"]},
            {"name": "Sender.Company", "value": "PostHog Inc."},
        ],
        "fields": [
            {"uuid": f"{document_id}-f1", "name": "Payment schedule", "field_id": "payment_schedule",
             "type": "dropdown", "value": values["payment_schedule"], "assigned_to": {"type": "signer"}},
            {"uuid": f"{document_id}-f2", "name": "Credit start", "field_id": "credit_start",
             "type": "dropdown", "value": values["credit_start"], "assigned_to": {"type": "signer"}},
            *[
                {"uuid": f"{document_id}-p{i}", "name": key.replace("_", " ").title(), "field_id": key,
                 "type": "checkbox", "value": key in products, "assigned_to": {"type": "signer"}}
                for i, key in enumerate(PRODUCT_FIELDS)
            ],
        ],
        "recipients": [
            {"id": f"{document_id}-r1", "first_name": values["signer_first_name"],
             "last_name": values["signer_last_name"], "email": values["customer_email"],
             "recipient_type": "signer", "role": "Client", "has_completed": completed is not None},
        ],
        "pricing": {
            "tables": [{
                "id": f"{document_id}-t1",
                "name": "PostHog Credit",
                "total": grand_total,
                "items": [{
                    "id": f"{document_id}-i1",
                    "sku": "posthog-credit",
                    "name": "PostHog prepaid credit",
                    "qty": 1,
                    "price": values["credit_amount"],
                    "discount": {"type": "percent", "value": values["discount"]},
                    "custom_columns": {"Credit Amount": values["credit_amount"]},
                    "total": values["price"],
                }, *extra_lines],
            }],
            "total": grand_total,
        },
        "grand_total": {"amount": grand_total, "currency": values["currency"]},
    }


def _sum(amounts: list[Any]) -> Any:
    """The grand total of plain decimal amounts, like PandaDoc's; a single line is passed through
    untouched (a JSON number stays a number), and text that is not a plain decimal is not added."""
    if len(amounts) == 1:
        return amounts[0]
    try:
        total = sum((Decimal(str(amount)) for amount in amounts), Decimal(0))
    except InvalidOperation:
        return amounts[0]
    return f"{total:.2f}"
