"""Every table the migrations manage: importing a models module registers its tables."""

import activities.webhook_setup  # noqa: F401  (the Stripe webhook endpoint and its secret)
import store.catalog_audit  # noqa: F401  (changes to the catalog and subscriptions outside a plan row)
import store.mrr_aggregates  # noqa: F401  (MRR pre-aggregates)
import store.revenue_totals  # noqa: F401  (revenue pre-aggregates)
import store.warehouse  # noqa: F401  (the revenue warehouse)
from store import models  # noqa: F401  (plans, audit, users, tokens, inbox)
from store.models import Base

metadata = Base.metadata
