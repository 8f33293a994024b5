"""Route handlers, one module per group of Stripe objects. `load()` registers them all."""

from __future__ import annotations

import importlib

MODULES = ("customers", "catalog", "invoices", "subscriptions", "schedules", "payments", "events",
           "accounts")


def load() -> None:
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")
