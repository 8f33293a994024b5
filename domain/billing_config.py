"""The billing config file: product keys → default Stripe price ids, and the credit product.

In the runbook the default price of a product is decided by this config, not by Stripe.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class ProductConfig:
    key: str
    name: str
    price: str
    addon_of: str | None = None


@dataclass(frozen=True)
class BillingConfig:
    credit_product: str
    products: dict[str, ProductConfig]

    def prices_for(self, keys: list[str]) -> list[str]:
        return [self.products[key].price for key in keys]

    def addons_of(self, key: str) -> list[str]:
        """Keys of the add-ons of product `key` (e.g. group_analytics for product_analytics),
        whose tier volumes must equal the main product's."""
        return sorted(k for k, p in self.products.items() if p.addon_of == key)


class BillingConfigError(ValueError):
    pass


@lru_cache(maxsize=4)
def load_billing_config(path: str) -> BillingConfig:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BillingConfigError(f"Billing config {path} cannot be read: {exc}") from None
    products = {
        key: ProductConfig(key=key, name=str(p.get("name", key)), price=str(p["price"]),
                           addon_of=p.get("addon_of"))
        for key, p in data.get("products", {}).items()
    }
    if "credit_product" not in data:
        raise BillingConfigError(f"Billing config {path} has no credit_product.")
    for key, product in products.items():
        if product.addon_of is not None and product.addon_of not in products:
            raise BillingConfigError(
                f"Billing config {path}: product {key} is an add-on of {product.addon_of!r}, "
                "which the config does not list.")
    return BillingConfig(credit_product=str(data["credit_product"]), products=products)
