"""`revops catalog check`, `GET /api/catalog/problems` and the catalog page against the Stripe
sandbox: the demo catalog is clean; a catalog planted with one of each problem reports each once."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from cli.catalog import main as catalog_cli
from domain.catalog_check import KINDS
from sandbox.stripe.harness import StripeSandbox
from settings import Settings
from tests.catalog.conftest import build_app, tiers
from tests.fixtures.app import auth


def plant_one_of_each(sandbox: StripeSandbox) -> dict[str, tuple[str, ...]]:
    """Break each runbook rule once on top of the demo catalog; returns kind → expected ids."""
    client = sandbox.client()
    dup = client.v1.products.create({"name": "Session replay (copy)",
                                     "metadata": {"posthog_product_key": "session_replay"}})
    unknown = client.v1.products.create({"name": "Web analytics", "metadata": {"posthog_product_key": "web_analytics"}})
    client.v1.products.update("prod_data_warehouse", {"active": False})
    bad_days = client.v1.prices.create({
        "currency": "usd", "product": "prod_surveys", "unit_amount": 0, "recurring": {"interval": "month"},
        "metadata": {"plan": "startup", "valid_days": "30.5"}})
    bad_move = client.v1.prices.create({
        "currency": "usd", "product": "prod_feature_flags", "unit_amount": 0, "recurring": {"interval": "month"},
        "metadata": {"plan": "startup", "valid_days": "30", "move_to_price_id": "price_session_replay_default"}})
    not_startup = client.v1.prices.create({
        "currency": "usd", "product": "prod_session_replay", "unit_amount": 0, "recurring": {"interval": "month"},
        "metadata": {"valid_days": "90"}})
    odd_tiers = client.v1.prices.create({
        "currency": "usd", "product": "prod_group_analytics", "billing_scheme": "tiered", "tiers_mode": "graduated",
        "tiers": tiers((1_000_000, "0"), (2_000_000, "0.003"), (16_000_000, "0.002"), ("inf", "0.001")),
        "recurring": {"interval": "month"}})
    meter = client.v1.billing.meters.create({"display_name": "Events (summed)", "event_name": "events_sum",
                                             "default_aggregation": {"formula": "sum"}})
    summed = client.v1.prices.create({
        "currency": "usd", "product": "prod_product_analytics", "unit_amount": 1,
        "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    client.v1.prices.update("price_feature_flags_default", {"active": False})
    return {
        "duplicate_product_key": tuple(sorted(("prod_session_replay", dup.id))),
        "product_key_not_in_config": (unknown.id,),
        "config_key_without_product": ("data_warehouse",),
        "startup_valid_days": (bad_days.id,),
        "startup_move_to_price": (bad_move.id, "price_session_replay_default"),
        "valid_days_without_startup_plan": (not_startup.id,),
        "tier_volumes_differ": (odd_tiers.id, "price_product_analytics_tiered"),
        "metered_not_last_usage": (summed.id, meter.id),
        "default_price_unusable": ("price_feature_flags_default",),
    }


def test_demo_catalog_is_clean(catalog_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert catalog_cli(["catalog", "check"], settings=catalog_settings) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "No problems in 7 products" in captured.err
    assert catalog_cli(["catalog", "check", "--json"], settings=catalog_settings) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == []


def test_planted_catalog_reports_each_problem_once(catalog_settings: Settings, fresh_stripe_sandbox: StripeSandbox,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    expected = plant_one_of_each(fresh_stripe_sandbox)
    assert set(expected) == set(KINDS)
    assert catalog_cli(["catalog", "check"], settings=catalog_settings) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(KINDS)
    for kind, ids in expected.items():
        [line] = [line for line in lines if line.startswith(f"{kind}: ")]
        assert all(i in line for i in ids), line
    assert catalog_cli(["catalog", "check", "--json"], settings=catalog_settings) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert {p["kind"]: tuple(p["ids"]) for p in problems} == expected
    assert len(problems) == len(expected)


def test_check_that_cannot_reach_stripe_exits_2(catalog_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    dead = replace(catalog_settings, stripe_api_base="http://127.0.0.1:9")
    assert catalog_cli(["catalog", "check"], settings=dead) == 2
    assert "The Stripe catalog could not be read" in capsys.readouterr().err


def test_bad_billing_config_exits_2(catalog_settings: Settings, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "billing.toml"
    config.write_text('credit_product = "prod_posthog_credit"\n[products.groups]\nprice = "p"\naddon_of = "nope"\n')
    assert catalog_cli(["catalog", "check"], settings=replace(catalog_settings, billing_config=str(config))) == 2
    assert "add-on of 'nope'" in capsys.readouterr().err


def test_api_problems_for_viewers_only(catalog_settings: Settings, users: dict[str, str],
                                       fresh_stripe_sandbox: StripeSandbox) -> None:
    client = build_app(catalog_settings).test_client()
    assert client.get("/api/catalog/problems").status_code == 401
    clean = client.get("/api/catalog/problems", headers=auth(users["viewer"]))
    assert clean.status_code == 200 and clean.get_json()["problems"] == [] and clean.get_json()["count"] == 0
    expected = plant_one_of_each(fresh_stripe_sandbox)
    body = client.get("/api/catalog/problems", headers=auth(users["operator"])).get_json()
    assert {p["kind"]: tuple(p["ids"]) for p in body["problems"]} == expected


def test_api_says_when_stripe_is_down(catalog_settings: Settings, users: dict[str, str]) -> None:
    client = build_app(replace(catalog_settings, stripe_api_base="http://127.0.0.1:9")).test_client()
    response = client.get("/api/catalog/problems", headers=auth(users["viewer"]))
    assert response.status_code == 502 and "could not be read" in response.get_json()["error"]


def test_page_lists_problems_with_dashboard_links(browser_of: Callable[[str], tuple[FlaskClient, str]],
                                                  fresh_stripe_sandbox: StripeSandbox) -> None:
    client, _ = browser_of("viewer")
    page = client.get("/catalog").get_data(as_text=True)
    assert 'id="catalog-ok"' in page
    expected = plant_one_of_each(fresh_stripe_sandbox)
    page = client.get("/catalog").get_data(as_text=True)
    assert page.count('class="problem"') == len(expected)
    assert 'href="https://dashboard.stripe.com/test/prices/price_feature_flags_default"' in page
