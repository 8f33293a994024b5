"""File-backed state across restarts, the demo catalog, serve() port errors, reset."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest
import stripe

from sandbox.stripe import catalog
from sandbox.stripe.harness import StripeSandbox
from sandbox.stripe.server import serve, start_in_thread

from .helpers import control


def test_state_file_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "stripe-sandbox.sqlite3"
    first = start_in_thread(state_file=state)
    try:
        client = first.client()
        cus = client.v1.customers.create({"email": "keep@example.com"})
        client.v1.customers.balance_transactions.create(cus.id, {"amount": -700, "currency": "usd"})
        first.advance(5 * 86400)
        moved_now = first.now()
    finally:
        first.stop()
    with sqlite3.connect(state) as db:  # one row per object
        (body,) = db.execute("SELECT body FROM objects WHERE id = ?", (cus.id,)).fetchone()
    assert json.loads(body)["email"] == "keep@example.com"

    second = start_in_thread(state_file=state)
    try:
        client = second.client()
        assert client.v1.customers.retrieve(cus.id).balance == -700
        assert second.now() >= moved_now  # the sandbox clock is persisted too
        assert client.v1.products.retrieve(catalog.PRODUCTS["surveys"]).name == "Surveys"
        assert len(client.v1.products.list({"limit": 100}).data) == len(catalog.PRODUCTS)  # not seeded twice
    finally:
        second.stop()


def test_old_json_snapshot_is_imported_once(tmp_path: Path) -> None:
    """A state file from before the SQLite store (`*.json`) is read and carried over beside it."""
    from sandbox.stripe.store import State

    old = tmp_path / "stripe-sandbox.json"
    first = start_in_thread(seed_catalog=False)
    try:
        cus = first.client().v1.customers.create({"email": "legacy@example.com"})
        first.advance(3 * 86400)
        with first.engine.lock:
            snapshot = first.engine.state
            snapshot.clock_offset = first.engine.clock.offset
            old.write_text(json.dumps(snapshot.to_json()))
        moved = first.now()
    finally:
        first.stop()
    assert State.from_json(json.loads(old.read_text())).objects[cus.id]["email"] == "legacy@example.com"

    for _ in range(2):  # the second start reads the database, not the snapshot again
        sb = start_in_thread(state_file=old, seed_catalog=False)
        try:
            assert sb.client().v1.customers.retrieve(cus.id).email == "legacy@example.com"
            assert sb.now() >= moved
            sb.client().v1.customers.update(cus.id, {"name": "Changed"})
        finally:
            sb.stop()
    assert (tmp_path / "stripe-sandbox.sqlite3").exists()
    sb = start_in_thread(state_file=old, seed_catalog=False)
    try:
        assert sb.client().v1.customers.retrieve(cus.id).name == "Changed"
    finally:
        sb.stop()


def test_a_state_file_that_is_not_a_database_is_refused_with_its_name(tmp_path: Path) -> None:
    from sandbox.stripe.store import StateFileError

    bad = tmp_path / "broken.sqlite3"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StateFileError, match="broken.sqlite3 is not a sandbox database"):
        start_in_thread(state_file=bad, seed_catalog=False)
    assert bad.read_bytes() == b"not a database at all" * 100  # left as it was


def test_catalog_ids_and_prices(stripe_sandbox: StripeSandbox) -> None:
    client = stripe_sandbox.client()
    for key, prod_id in catalog.PRODUCTS.items():
        prod = client.v1.products.retrieve(prod_id)
        assert prod.metadata.posthog_product_key == key
    credit = client.v1.products.retrieve("prod_posthog_credit")
    assert credit.name == "PostHog Credit"
    ga = client.v1.products.retrieve("prod_group_analytics")
    assert ga.metadata.addon == "true"
    tiered = client.v1.prices.retrieve("price_product_analytics_tiered", {"expand": ["tiers"]})
    assert tiered.tiers_mode == "graduated" and tiered.recurring.usage_type == "licensed"
    assert tiered.tiers[-1].up_to is None
    assert "tiers" not in client.v1.prices.retrieve("price_product_analytics_tiered").to_dict()
    startup = client.v1.prices.retrieve("price_session_replay_startup")
    assert startup.metadata.plan == "startup" and int(startup.metadata.valid_days) > 0
    default = client.v1.prices.retrieve("price_feature_flags_default")
    assert default.recurring.interval == "month" and default.unit_amount > 0
    by_key = client.v1.prices.list({"lookup_keys": ["surveys_default"]}).data
    assert [p.id for p in by_key] == ["price_surveys_default"]
    assert control(stripe_sandbox, "GET", "/_sandbox/catalog")["prices"]["surveys"]["startup"] == (
        "price_surveys_startup"
    )


def test_products_prices_coupons_crud(stripe_sandbox: StripeSandbox) -> None:
    client = stripe_sandbox.client()
    prod = client.v1.products.create({"name": "Widget", "metadata": {"k": "v"}})
    assert prod.id.startswith("prod_")
    price = client.v1.prices.create(
        {
            "currency": "usd",
            "product": prod.id,
            "unit_amount": 1200,
            "nickname": "w",
            "lookup_key": f"w-{prod.id}",
            "recurring": {"interval": "month", "interval_count": 3},
            "metadata": {"a": "b"},
        }
    )
    assert price.type == "recurring" and price.recurring.interval_count == 3 and price.lookup_key == f"w-{prod.id}"
    with pytest.raises(Exception, match="3 years"):
        client.v1.prices.create(
            {
                "currency": "usd",
                "product": prod.id,
                "unit_amount": 1,
                "recurring": {"interval": "year", "interval_count": 4},
            }
        )
    assert client.v1.prices.update(price.id, {"active": False}).active is False
    assert price.id in [p.id for p in client.v1.prices.list({"product": prod.id, "active": False}).data]
    assert client.v1.products.update(prod.id, {"name": "Widget 2"}).name == "Widget 2"
    coupon = client.v1.coupons.create(
        {"percent_off": 12.5, "duration": "repeating", "duration_in_months": 3, "name": "Q"}
    )
    assert coupon.percent_off == 12.5 and client.v1.coupons.retrieve(coupon.id).name == "Q"
    assert client.v1.coupons.delete(coupon.id).deleted is True


def test_reset_clears_state_but_keeps_catalog(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = client.v1.customers.create({})
    control(sb, "POST", "/_sandbox/reset")
    assert client.v1.customers.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.retrieve(cus.id)
    assert client.v1.products.retrieve("prod_product_analytics").id == "prod_product_analytics"


def test_port_in_use_raises_oserror() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=str(port)):
            serve(port=port, seed_catalog=False)


def test_reset_is_persisted(tmp_path: Path) -> None:
    state = tmp_path / "reset.sqlite3"
    first = start_in_thread(state_file=state)
    try:
        cus = first.client().v1.customers.create({"email": "before-reset@example.com"})
        control(first, "POST", "/_sandbox/reset")
        after = first.client().v1.customers.create({"email": "after-reset@example.com"})
    finally:
        first.stop()
    second = start_in_thread(state_file=state)
    try:
        client = second.client()
        assert [c.id for c in client.v1.customers.list().data] == [after.id]
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.customers.retrieve(cus.id)
        assert len(client.v1.products.list({"limit": 100}).data) == len(catalog.PRODUCTS)
    finally:
        second.stop()
