"""MRR of prices that are not a flat unit amount (issue 18 defect 6), through the sandbox and the
sync: tiered, decimal and currency_options prices; what cannot be priced is reported, not zero."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from domain.mrr import mrr_by_customer
from settings import Settings
from store.db import unit_of_work
from store.revenue import mrr_inputs
from store.sync import full_sync
from store.warehouse import StripePrice, row_for, upsert
from tests.revenue.conftest import CARD


def _customer(client: Any, email: str) -> str:
    return str(client.v1.customers.create({"email": email, **CARD}).id)  # type: ignore[typeddict-item]


def test_tiered_decimal_and_other_currency_prices_have_mrr(fresh_stripe_sandbox: Any,
                                                           revenue_settings: Settings) -> None:
    client = fresh_stripe_sandbox.client()
    product = client.v1.products.create({"name": "Events"}).id
    tiered = client.v1.prices.create({
        "product": product, "currency": "usd", "recurring": {"interval": "month"}, "billing_scheme": "tiered",
        "tiers_mode": "volume", "tiers": [{"up_to": 10, "unit_amount": 500},
                                          {"up_to": "inf", "unit_amount": 400, "flat_amount": 1000}]})
    decimal = client.v1.prices.create({"product": product, "currency": "usd", "recurring": {"interval": "month"},
                                       "unit_amount_decimal": "0.5"})
    a, b = (_customer(client, f"{n}@example.com") for n in "ab")
    client.v1.subscriptions.create({"customer": a, "items": [{"price": tiered.id, "quantity": 15}]})
    client.v1.subscriptions.create({"customer": b, "items": [{"price": decimal.id, "quantity": 10001}]})
    full_sync(revenue_settings, rate=None)
    tomorrow = date.fromtimestamp(fresh_stripe_sandbox.now()) + timedelta(days=1)
    with unit_of_work(revenue_settings.database_url) as s:
        subs, left_out = mrr_inputs(s)
    # 15 units in the second volume tier: 15 × 4.00 + 10.00; 10,001 × 0.5 cents = 50.005 → 50.01
    # (on main both were 0).
    assert mrr_by_customer(subs, tomorrow) == {a: 7000, b: 5001}
    assert left_out == []


START = 1_800_000_000


def _subscription(s: Any, sub_id: str, customer: str, currency: str, price: dict[str, Any]) -> None:
    upsert(s, row_for_model("subscription"), [row_for({
        "id": sub_id, "object": "subscription", "customer": customer, "status": "active", "currency": currency,
        "start_date": START, "created": START})])
    upsert(s, row_for_model("subscription_item"), [row_for({
        "id": f"si_{sub_id}", "object": "subscription_item", "subscription": sub_id, "price": price,
        "quantity": 1})])


def test_metered_and_currency_option_prices_and_what_is_left_out(revenue_settings: Settings) -> None:
    metered = {"id": "price_metered", "object": "price", "currency": "usd", "billing_scheme": "per_unit",
               "unit_amount": 2, "recurring": {"interval": "month", "interval_count": 1, "usage_type": "metered"}}
    euro = {"id": "price_euro", "object": "price", "currency": "usd", "billing_scheme": "per_unit",
            "unit_amount": 1000, "currency_options": {"eur": {"unit_amount": 900}},
            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"}}
    with unit_of_work(revenue_settings.database_url) as s:
        upsert(s, StripePrice, [row_for(metered), row_for(euro)])
        _subscription(s, "sub_m", "cus_m", "usd", metered)
        _subscription(s, "sub_billed", "cus_billed", "usd", metered)
        _subscription(s, "sub_e", "cus_e", "eur", euro)
        _subscription(s, "sub_gbp", "cus_gbp", "gbp", euro)
        # The metered subscription's last two periods: 80.00, then 123.45.
        for i, (amount, end) in enumerate([(8000, START + 30 * 86400), (12345, START + 60 * 86400)]):
            upsert(s, row_for_model("line_item"), [row_for({
                "id": f"il_m{i}", "object": "line_item", "invoice": f"in_m{i}", "amount": amount, "currency": "usd",
                "period": {"start": end - 30 * 86400, "end": end},
                "parent": {"subscription_item_details": {"subscription": "sub_billed"}},
                "pricing": {"price_details": {"price": "price_metered"}}})])
    with unit_of_work(revenue_settings.database_url) as s:
        subs, left_out = mrr_inputs(s)
    day = date.fromtimestamp(START) + timedelta(days=90)
    assert mrr_by_customer(subs, day) == {"cus_billed": 12345, "cus_e": 900}
    assert left_out == ["subscription sub_gbp item si_sub_gbp: price price_euro has no amount in gbp",
                        "subscription sub_m item si_sub_m: price price_metered is metered and no period has "
                        "been billed yet"]


def row_for_model(kind: str) -> Any:
    from store.warehouse import TABLES

    return TABLES[kind][0]
