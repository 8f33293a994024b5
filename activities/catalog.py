"""The Stripe catalog: read it into a `CatalogSnapshot`, check it, and the runbook's catalog
operations (bespoke prices, moving a subscription to other prices, subscription discounts).

Every write carries a deterministic idempotency key and looks before it creates, so a retried
activity or a double click makes one object. The rules themselves live in `domain/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe
from stripe.params import PriceListParams, ProductListParams
from stripe.params.billing import MeterListParams
from temporalio import activity

from activities.stripe_api import stripe_client
from domain.billing_config import BillingConfig, load_billing_config
from domain.catalog_check import CatalogSnapshot, Meter, Price, Problem, Product, Tier, check_catalog
from settings import Settings


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
