"""The Annual Plan Table's columns as the business names them (the seed's Zapier table), shared by
the CSV import (Zapier export → rows) and the Google Sheet mirror (rows → sheet)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Seed column → plan JSON key. The first columns are the ones Zapier filled from PandaDoc.
IMPORT_COLUMNS: dict[str, str] = {
    "PandaDoc Order Form": "pandadoc_id",
    "Company Name": "company_name",
    "Customer Email": "customer_email",
    "Credit Amount": "credit_amount",
    "Discount": "discount",
    "Price": "price",
    "Start Date": "start_date",
    "Term": "term_months",
    "PostHog Org ID": "posthog_org_id",
    "Stripe ID - existing": "stripe_customer_id_existing",
    "Currency": "currency",
    "Payment Schedule": "payment_schedule",
    "Credit Start": "credit_start",
    "Credit Release": "credit_release",
    "Payment Terms": "payment_terms_days",
    "Products": "products",
}

# What the sheet mirror shows, keyed by "Row ID" in column A.
SHEET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Row ID", "id"),
    *IMPORT_COLUMNS.items(),
    ("State", "state"),
    ("Stripe Customer ID", "stripe_customer_id"),
    ("Invoice ID", "invoice_id"),
    ("Subscription Schedule ID", "subscription_schedule_id"),
    ("Monthly Price ID", "monthly_price_id"),
    ("Subscription ID", "subscription_id"),
    ("Credit Applied At", "credit_applied_at"),
    ("Credit Scheduled For", "credit_scheduled_for"),
    ("Needs Review", "errors"),
    ("Updated At", "updated_at"),
)
SHEET_HEADER: list[str] = [title for title, _ in SHEET_COLUMNS]


def sheet_row(plan: Mapping[str, Any]) -> list[str]:
    """A plan (its API JSON) as the text cells of one sheet row."""
    return [_cell(key, plan.get(key)) for _, key in SHEET_COLUMNS]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "products":
        return ", ".join(value)
    if key == "errors":
        return "; ".join(f"{field}: {message}" for field, message in value.items() if not field.startswith("_"))
    return str(value)
