"""The Stripe catalog: read it into a `CatalogSnapshot`, check it, and the runbook's catalog
operations (bespoke prices, moving a subscription to other prices, subscription discounts).

Every write carries a deterministic idempotency key and looks before it creates, so a retried
activity or a double click makes one object. The rules themselves live in `domain/`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import stripe
from stripe.params import PriceCreateParams, PriceListParams, ProductListParams
from stripe.params._price_create_params import PriceCreateParamsTier
from stripe.params.billing import MeterCreateParams, MeterListParams
from temporalio import activity

from activities.stripe_api import idempotency_key, stripe_client
from domain.billing_config import BillingConfig, load_billing_config
from domain.catalog_check import (
    BespokePrice,
    BespokeRefused,
    CatalogSnapshot,
    Meter,
    Price,
    Problem,
    Product,
    Tier,
    bespoke_price_problems,
    check_catalog,
)
from settings import Settings

# Who changed the catalog or a subscription, when, with which Stripe ids: one JSON line each.
audit_log = logging.getLogger("revops.audit.catalog")


def audit(actor: str, action: str, **details: Any) -> None:
    audit_log.info(json.dumps({"actor": actor, "action": action, **details}, sort_keys=True, default=str))


def _metadata(obj: Any) -> dict[str, str]:
    meta = getattr(obj, "metadata", None)
    return {str(k): str(v) for k, v in meta.to_dict().items()} if meta is not None else {}


def _decimal_text(value: Any) -> str | None:
    return None if value is None else str(value)


def price_from_stripe(price: stripe.Price) -> Price:
    recurring = price.recurring
    tiers = tuple(
        Tier(up_to=t.up_to, unit_amount_decimal=_decimal_text(t.unit_amount_decimal),
             flat_amount_decimal=_decimal_text(t.flat_amount_decimal))
        for t in (getattr(price, "tiers", None) or [])
    )
    return Price(
        id=price.id,
        product=price.product if isinstance(price.product, str) else price.product.id,
        active=bool(price.active),
        currency=price.currency,
        nickname=price.nickname,
        metadata=_metadata(price),
        recurring=recurring is not None,
        usage_type=recurring.usage_type if recurring is not None else None,
        meter=recurring.meter if recurring is not None else None,
        billing_scheme=price.billing_scheme,
        tiers_mode=price.tiers_mode,
        tiers=tiers,
    )


def read_catalog(client: stripe.StripeClient) -> CatalogSnapshot:
    """Every product, price (tiers expanded: Stripe only returns them when asked) and meter,
    active or archived: archived targets matter to the checks."""
    product_params: ProductListParams = {"limit": 100}
    price_params: PriceListParams = {"limit": 100, "expand": ["data.tiers"]}
    meter_params: MeterListParams = {"limit": 100}
    products = tuple(
        Product(id=p.id, name=p.name, active=bool(p.active), metadata=_metadata(p))
        for p in client.v1.products.list(product_params).auto_paging_iter()
    )
    prices = tuple(price_from_stripe(p) for p in client.v1.prices.list(price_params).auto_paging_iter())
    meters = tuple(
        Meter(id=m.id, event_name=m.event_name, formula=m.default_aggregation.formula, active=m.status == "active")
        for m in client.v1.billing.meters.list(meter_params).auto_paging_iter()
    )
    return CatalogSnapshot(products=products, prices=prices, meters=meters)


@dataclass(frozen=True)
class CatalogCheckResult:
    """What the scheduled check returns and the table page shows."""

    problems: list[Problem]
    products: int
    prices: int
    meters: int


def run_catalog_check(client: stripe.StripeClient, config: BillingConfig) -> CatalogCheckResult:
    snapshot = read_catalog(client)
    return CatalogCheckResult(problems=check_catalog(snapshot, config), products=len(snapshot.products),
                              prices=len(snapshot.prices), meters=len(snapshot.meters))


# ---- bespoke prices --------------------------------------------------------------------------


@dataclass(frozen=True)
class BespokeResult:
    price_id: str
    created: bool  # False: the same request had already made it (a retry or a double click)
    meter: str
    nickname: str


def usage_meter(client: stripe.StripeClient, product_key: str) -> str:
    """The product's usage meter (`<key>_usage`, aggregation `last`), made once if missing."""
    event_name = f"{product_key}_usage"
    params: MeterListParams = {"limit": 100, "status": "active"}
    for meter in client.v1.billing.meters.list(params).auto_paging_iter():
        if meter.event_name == event_name:
            if meter.default_aggregation.formula != "last":
                raise BespokeRefused([f"the usage meter {meter.id} ({event_name}) aggregates with "
                                      f"`{meter.default_aggregation.formula}`, not `last`; fix the meter or name "
                                      "another one"])
            return meter.id
    create: MeterCreateParams = {
        "display_name": f"{product_key} usage (most recent value)",
        "event_name": event_name,
        # The billing service reports the full count every day, so the latest report is the usage.
        "default_aggregation": {"formula": "last"},
    }
    key = idempotency_key("catalog", "meter", event_name)
    return client.v1.billing.meters.create(create, {"idempotency_key": key}).id


def _fingerprint(request: BespokePrice, meter: str) -> str:
    """Identity of a bespoke price request: the same request makes one price, however often sent."""
    body = {"product": request.product, "currency": request.currency, "interval": request.interval, "meter": meter,
            "tiers": [[t.up_to, t.unit_amount_decimal, t.flat_amount_decimal] for t in request.tiers],
            "metadata": dict(sorted(request.metadata.items()))}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]


def create_bespoke_price(client: stripe.StripeClient, config: BillingConfig, request: BespokePrice, *,
                         actor: str, today: date) -> BespokeResult:
    """Add a custom graduated, metered price to an existing product, or refuse with every reason."""
    snapshot = read_catalog(client)
    problems = bespoke_price_problems(snapshot, config, request)
    if problems:
        audit(actor, "bespoke_price_refused", product=request.product, problems=problems)
        raise BespokeRefused(problems)
    product = snapshot.product(request.product)
    assert product is not None and product.key is not None  # checked above
    meter = request.meter or usage_meter(client, product.key)
    fingerprint = _fingerprint(request, meter)
    nickname = f"Custom - {today.isoformat()}"
    for existing in snapshot.prices:
        if existing.product == product.id and existing.metadata.get("bespoke_request") == fingerprint:
            return BespokeResult(existing.id, False, meter, existing.nickname or nickname)
    tiers: list[PriceCreateParamsTier] = []
    for tier in request.tiers:
        row: PriceCreateParamsTier = {"up_to": "inf" if tier.up_to is None else tier.up_to,
                                      "unit_amount_decimal": Decimal(tier.unit_amount_decimal or "0")}
        if tier.flat_amount_decimal is not None:
            row["flat_amount"] = int(tier.flat_amount_decimal)
        tiers.append(row)
    params: PriceCreateParams = {
        "product": product.id,
        "currency": request.currency,
        "nickname": nickname,
        "billing_scheme": "tiered",
        "tiers_mode": "graduated",
        "tiers": tiers,
        "recurring": {"interval": "month" if request.interval == "month" else "year", "usage_type": "metered",
                      "meter": meter},
        "metadata": {**request.metadata, "posthog_product_key": product.key, "bespoke_request": fingerprint,
                     "created_by": actor},
    }
    key = idempotency_key("catalog", "bespoke-price", product.id, fingerprint, today.isoformat())
    price = client.v1.prices.create(params, {"idempotency_key": key})
    audit(actor, "bespoke_price_created", product=product.id, price=price.id, meter=meter, nickname=nickname)
    return BespokeResult(price.id, True, meter, nickname)


class CatalogActivities:
    """Activities over the Stripe catalog; one instance per worker, holding its settings."""

    def __init__(self, settings: Settings, client: stripe.StripeClient | None = None) -> None:
        self.settings = settings
        self.client = client or stripe_client(settings)

    def config(self) -> BillingConfig:
        return load_billing_config(self.settings.billing_config)

    @activity.defn(name="catalog_check")
    def check(self) -> CatalogCheckResult:
        return run_catalog_check(self.client, self.config())
