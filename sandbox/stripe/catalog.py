"""The demo catalog the sandbox loads on start (`seed_catalog=True`), with deterministic ids.

This module is data: the project's billing config references these ids. Each product has
  - `price_<key>_default`  flat monthly licensed price (what subscriptions are created with),
  - `price_<key>_tiered`   monthly graduated tiered price (licensed; quantity = units used),
  - `price_<key>_startup`  monthly startup-plan price, metadata plan=startup and valid_days,
and "PostHog Credit" (`prod_posthog_credit`) has one-off `price_posthog_credit` (1 credit = 1 cent,
buy N credits with quantity N). Amounts are USD minor units (cents); unit amounts in tiers are
decimal strings (fractions of a cent per unit).
"""

from __future__ import annotations

from typing import Any

CURRENCY = "usd"

# key, name, flat monthly amount (cents), graduated tiers (up_to, unit_amount_decimal), add-on?
_PRODUCTS: list[tuple[str, str, int, list[tuple[int | None, str]], bool]] = [
    (
        "product_analytics",
        "Product analytics",
        45000,
        [(1_000_000, "0"), (2_000_000, "0.00500"), (15_000_000, "0.00343"), (None, "0.00090")],
        False,
    ),
    (
        "session_replay",
        "Session replay",
        30000,
        [(5_000, "0"), (15_000, "0.500"), (50_000, "0.400"), (None, "0.200")],
        False,
    ),
    (
        "feature_flags",
        "Feature flags",
        20000,
        [(1_000_000, "0"), (2_000_000, "0.0100"), (10_000_000, "0.0070"), (None, "0.0025")],
        False,
    ),
    ("surveys", "Surveys", 10000, [(1_500, "0"), (2_000, "20.000"), (10_000, "10.000"), (None, "1.000")], False),
    (
        "data_warehouse",
        "Data warehouse",
        25000,
        [(1_000_000, "0"), (3_000_000, "0.0150"), (10_000_000, "0.0100"), (None, "0.0050")],
        False,
    ),
    # An add-on's tier volumes equal its main product's (runbook: the billing service errors
    # otherwise); only the unit amounts differ.
    (
        "group_analytics",
        "Group analytics",
        15000,
        [(1_000_000, "0"), (2_000_000, "0.00300"), (15_000_000, "0.00200"), (None, "0.00100")],
        True,
    ),
]

STARTUP_VALID_DAYS = 365
STARTUP_AMOUNT = 0  # the startup plan is free for `valid_days`

PRODUCTS: dict[str, str] = {key: f"prod_{key}" for key, *_ in _PRODUCTS} | {"posthog_credit": "prod_posthog_credit"}

PRICES: dict[str, dict[str, str]] = {
    key: {
        "default": f"price_{key}_default",
        "tiered": f"price_{key}_tiered",
        "startup": f"price_{key}_startup",
    }
    for key, *_ in _PRODUCTS
} | {"posthog_credit": {"credit": "price_posthog_credit"}}


def product_specs() -> list[dict[str, Any]]:
    """Create-params for each catalog product and its prices (used by `seed.py`)."""
    specs: list[dict[str, Any]] = []
    for key, name, flat, tiers, addon in _PRODUCTS:
        meta = {"posthog_product_key": key}
        if addon:
            meta["addon"] = "true"
        specs.append(
            {
                "product": {"id": PRODUCTS[key], "name": name, "metadata": meta},
                "prices": [
                    {
                        "id": PRICES[key]["default"],
                        "currency": CURRENCY,
                        "unit_amount": flat,
                        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
                        "lookup_key": f"{key}_default",
                        "nickname": f"{name} (flat monthly)",
                        "metadata": {"posthog_product_key": key, "plan": "standard"},
                    },
                    {
                        "id": PRICES[key]["tiered"],
                        "currency": CURRENCY,
                        "billing_scheme": "tiered",
                        "tiers_mode": "graduated",
                        "tiers": [
                            {"up_to": "inf" if up_to is None else up_to, "unit_amount_decimal": unit}
                            for up_to, unit in tiers
                        ],
                        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
                        "lookup_key": f"{key}_tiered",
                        "nickname": f"{name} (graduated monthly)",
                        "metadata": {"posthog_product_key": key, "plan": "usage"},
                    },
                    {
                        "id": PRICES[key]["startup"],
                        "currency": CURRENCY,
                        "unit_amount": STARTUP_AMOUNT,
                        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
                        "lookup_key": f"{key}_startup",
                        "nickname": f"{name} (startup plan)",
                        "metadata": {
                            "posthog_product_key": key,
                            "plan": "startup",
                            "valid_days": str(STARTUP_VALID_DAYS),
                        },
                    },
                ],
                "default_price": PRICES[key]["default"],
            }
        )
    specs.append(
        {
            "product": {
                "id": PRODUCTS["posthog_credit"],
                "name": "PostHog Credit",
                "metadata": {"posthog_product_key": "posthog_credit"},
            },
            "prices": [
                {
                    "id": PRICES["posthog_credit"]["credit"],
                    "currency": CURRENCY,
                    "unit_amount": 1,
                    "lookup_key": "posthog_credit",
                    "nickname": "PostHog Credit (1 cent per credit)",
                    "metadata": {"posthog_product_key": "posthog_credit"},
                }
            ],
            "default_price": PRICES["posthog_credit"]["credit"],
        }
    )
    return specs


def as_dict() -> dict[str, Any]:
    return {"currency": CURRENCY, "products": PRODUCTS, "prices": PRICES}
