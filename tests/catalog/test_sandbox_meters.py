"""The Stripe sandbox's billing meters and metered prices, as strict as Stripe."""

from __future__ import annotations

import pytest
import stripe

from sandbox.stripe.harness import StripeSandbox


def test_meters_and_metered_prices(fresh_stripe_sandbox: StripeSandbox) -> None:
    client = fresh_stripe_sandbox.client()
    meter = client.v1.billing.meters.create({"display_name": "Events", "event_name": "events",
                                             "default_aggregation": {"formula": "last"}})
    assert meter.id.startswith("mtr_") and meter.status == "active" and meter.default_aggregation.formula == "last"
    assert meter.customer_mapping.type == "by_id" and meter.value_settings.event_payload_key == "value"
    assert [m.id for m in client.v1.billing.meters.list({"limit": 10}).data] == [meter.id]
    with pytest.raises(stripe.InvalidRequestError, match="already exists"):
        client.v1.billing.meters.create({"display_name": "Again", "event_name": "events",
                                         "default_aggregation": {"formula": "sum"}})
    with pytest.raises(stripe.InvalidRequestError, match="default_aggregation\\[formula\\]"):
        client.v1.billing.meters.create({"display_name": "Avg", "event_name": "avg",
                                         "default_aggregation": {"formula": "avg"}})
    base = {"currency": "usd", "product": "prod_product_analytics", "unit_amount": 1}
    price = client.v1.prices.create({**base, "recurring": {"interval": "month", "usage_type": "metered",
                                                           "meter": meter.id}})  # type: ignore[typeddict-item]
    assert price.recurring is not None and price.recurring.meter == meter.id
    with pytest.raises(stripe.InvalidRequestError, match="Missing required param: recurring\\[meter\\]"):
        client.v1.prices.create({**base, "recurring": {"interval": "month", "usage_type": "metered"}})  # type: ignore[typeddict-item]
    with pytest.raises(stripe.InvalidRequestError, match="only be set when `recurring\\[usage_type\\]` is `metered`"):
        client.v1.prices.create({**base, "recurring": {"interval": "month", "meter": meter.id}})  # type: ignore[typeddict-item]
    with pytest.raises(stripe.InvalidRequestError, match="No such billing meter: 'mtr_nope'"):
        client.v1.prices.create({**base, "recurring": {"interval": "month", "usage_type": "metered",
                                                       "meter": "mtr_nope"}})  # type: ignore[typeddict-item]
    # The removed `aggregate_usage` is refused, as Stripe does since meters replaced it.
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter: recurring\\[aggregate_usage\\]"):
        client.v1.prices.create({**base, "recurring": {"interval": "month", "usage_type": "metered",  # type: ignore[typeddict-item]
                                                       "meter": meter.id, "aggregate_usage": "last_during_period"}})
    assert client.v1.billing.meters.deactivate(meter.id).status == "inactive"
    assert client.v1.billing.meters.list({"status": "active"}).data == []
    with pytest.raises(stripe.InvalidRequestError, match="is inactive"):
        client.v1.prices.create({**base, "recurring": {"interval": "month", "usage_type": "metered",
                                                       "meter": meter.id}})  # type: ignore[typeddict-item]
    assert client.v1.billing.meters.reactivate(meter.id).status == "active"
