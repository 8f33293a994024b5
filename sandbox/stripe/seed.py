"""Load the demo catalog (catalog.py) into a sandbox, idempotently (ids are fixed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import catalog

if TYPE_CHECKING:
    from .core import Sandbox


def load_catalog(sb: Sandbox) -> None:
    from .resources.catalog import new_price, new_product

    for spec in catalog.product_specs():
        prod_spec = spec["product"]
        if prod_spec["id"] in sb.state.objects:
            continue  # already there (file-backed state)
        prod = new_product(sb, prod_spec)
        for price_spec in spec["prices"]:
            params = {k: v for k, v in price_spec.items() if k != "id"}
            new_price(sb, {**params, "product": prod["id"]}, price_id=price_spec["id"])
        prod["default_price"] = spec["default_price"]
