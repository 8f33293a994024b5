"""The runbook's catalog rules over plain snapshots (no Stripe): each rule alone, and properties."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from domain.billing_config import BillingConfig, ProductConfig
from domain.catalog_check import (
    BAD_MOVE_TO,
    BAD_VALID_DAYS,
    DEFAULT_PRICE,
    DUPLICATE_KEY,
    MISSING_PRODUCT,
    NOT_LAST_USAGE,
    NOT_STARTUP,
    TIERS_DIFFER,
    UNKNOWN_KEY,
    CatalogSnapshot,
    Meter,
    Price,
    Product,
    Tier,
    bespoke_tier_mismatches,
    check_catalog,
    tier_mismatches,
)

CONFIG = BillingConfig(
    credit_product="prod_credit",
    products={
        "analytics": ProductConfig("analytics", "Analytics", "price_a_default"),
        "groups": ProductConfig("groups", "Groups", "price_g_default", addon_of="analytics"),
    },
)
LADDER = (1_000_000, 2_000_000, 15_000_000, None)


def ladder(volumes: tuple[int | None, ...]) -> tuple[Tier, ...]:
    return tuple(Tier(up_to=v, unit_amount_decimal="0.001") for v in volumes)


def clean() -> CatalogSnapshot:
    return CatalogSnapshot(
        products=(
            Product("prod_a", "Analytics", metadata={"posthog_product_key": "analytics"}),
            Product("prod_g", "Groups", metadata={"posthog_product_key": "groups"}),
            Product("prod_credit", "Credit", metadata={"posthog_product_key": "credit"}),
        ),
        prices=(
            Price("price_a_default", "prod_a"),
            Price("price_g_default", "prod_g"),
            Price("price_a_tiered", "prod_a", billing_scheme="tiered", tiers_mode="graduated", tiers=ladder(LADDER)),
            Price("price_g_tiered", "prod_g", billing_scheme="tiered", tiers_mode="graduated", tiers=ladder(LADDER)),
            Price("price_a_startup", "prod_a", metadata={"plan": "startup", "valid_days": "365",
                                                         "move_to_price_id": "price_a_tiered"}),
            Price("price_a_metered", "prod_a", usage_type="metered", meter="mtr_last"),
        ),
        meters=(Meter("mtr_last", "events", "last"),),
    )


def kinds(snapshot: CatalogSnapshot, config: BillingConfig = CONFIG) -> list[str]:
    return [p.kind for p in check_catalog(snapshot, config)]


def with_prices(snapshot: CatalogSnapshot, *prices: Price) -> CatalogSnapshot:
    return replace(snapshot, prices=snapshot.prices + prices)


def test_clean_catalog_has_no_problems() -> None:
    assert check_catalog(clean(), CONFIG) == []


def test_duplicate_product_key_names_both_products() -> None:
    snap = replace(clean(), products=clean().products + (
        Product("prod_a2", "Analytics copy", metadata={"posthog_product_key": "analytics"}),))
    [problem] = check_catalog(snap, CONFIG)
    assert problem.kind == DUPLICATE_KEY and problem.ids == ("prod_a", "prod_a2")
    # An archived copy is not a duplicate: nothing can subscribe to it.
    archived = replace(clean(), products=clean().products + (
        Product("prod_a2", "Old", active=False, metadata={"posthog_product_key": "analytics"}),))
    assert kinds(archived) == []


def test_unknown_key_and_missing_product() -> None:
    snap = replace(clean(), products=(
        clean().products[0], clean().products[2],
        Product("prod_x", "X", metadata={"posthog_product_key": "experiments"})))
    problems = check_catalog(snap, CONFIG)
    assert [(p.kind, p.ids) for p in problems] == [(UNKNOWN_KEY, ("prod_x",)), (MISSING_PRODUCT, ("groups",))]


def test_startup_rules() -> None:
    bad = [
        Price("price_s0", "prod_a", metadata={"plan": "startup", "valid_days": "0"}),
        Price("price_s1", "prod_a", metadata={"plan": "startup", "valid_days": "30.5"}),
        Price("price_s2", "prod_a", metadata={"plan": "startup"}),
    ]
    for price in bad:
        problems = check_catalog(with_prices(clean(), price), CONFIG)
        assert [(p.kind, p.ids) for p in problems] == [(BAD_VALID_DAYS, (price.id,))], price
    for target, why in (("price_nope", "does not exist"), ("price_g_tiered", "belongs to product prod_g"),
                        ("price_archived", "is archived")):
        price = Price("price_s", "prod_a", metadata={"plan": "startup", "valid_days": "30", "move_to_price_id": target})
        extra = (Price("price_archived", "prod_a", active=False),)
        [problem] = check_catalog(with_prices(clean(), price, *extra), CONFIG)
        assert problem.kind == BAD_MOVE_TO and why in problem.message and problem.ids == ("price_s", target)
    plain = Price("price_p", "prod_a", metadata={"valid_days": "90"})
    [problem] = check_catalog(with_prices(clean(), plain), CONFIG)
    assert problem.kind == NOT_STARTUP and "free plans" in problem.message


def test_tiers_of_an_addon_must_match_the_main_product() -> None:
    odd = Price("price_g_custom", "prod_g", billing_scheme="tiered", tiers_mode="graduated",
                tiers=ladder((1_000_000, 2_000_000, 16_000_000, None)))
    [problem] = check_catalog(with_prices(clean(), odd), CONFIG)
    assert problem.kind == TIERS_DIFFER and problem.ids == ("price_g_custom", "price_a_tiered")
    assert "tier 3 is up to 16,000,000 but up to 15,000,000 on price_a_tiered" in problem.message
    # A bespoke main-product price that breaks the ladder is the one reported, not the standard ones.
    main_odd = Price("price_a_custom", "prod_a", billing_scheme="tiered", tiers_mode="graduated",
                     tiers=ladder((1_000_000, None)))
    [problem] = check_catalog(with_prices(clean(), main_odd), CONFIG)
    assert problem.ids == ("price_a_custom", "price_a_tiered")
    assert "tier 2 is up to inf but up to 2,000,000" in problem.message


def test_metered_prices_must_bill_the_most_recent_usage() -> None:
    snap = replace(clean(), meters=(Meter("mtr_last", "events", "sum"),))
    [problem] = check_catalog(snap, CONFIG)
    assert problem.kind == NOT_LAST_USAGE and "`sum`" in problem.message
    assert problem.ids == ("price_a_metered", "mtr_last")
    gone = replace(clean(), meters=())
    assert [p.ids for p in check_catalog(gone, CONFIG)] == [("price_a_metered", "mtr_last")]


def test_default_price_missing_archived_or_elsewhere() -> None:
    for prices, why in (
        (tuple(p for p in clean().prices if p.id != "price_g_default"), "does not exist"),
        (tuple(replace(p, active=False) if p.id == "price_g_default" else p for p in clean().prices), "archived"),
        (tuple(replace(p, product="prod_a") if p.id == "price_g_default" else p for p in clean().prices),
         "belongs to product prod_a"),
    ):
        [problem] = check_catalog(replace(clean(), prices=prices), CONFIG)
        assert problem.kind == DEFAULT_PRICE and why in problem.message and problem.ids == ("price_g_default",)


def test_bespoke_tiers_compare_with_the_other_side_of_the_family() -> None:
    assert bespoke_tier_mismatches(clean(), CONFIG, "prod_g", LADDER) == []
    assert bespoke_tier_mismatches(clean(), CONFIG, "prod_a", LADDER) == []
    assert bespoke_tier_mismatches(clean(), CONFIG, "prod_g", (1_000_000, 2_000_000, 16_000_000, None)) == [
        "tier 3 is up to 16,000,000 but up to 15,000,000 on price_a_tiered (prod_a)"]
    assert bespoke_tier_mismatches(clean(), CONFIG, "prod_a", (1_000_000, None)) == [
        "tier 2 is up to inf but up to 2,000,000 on price_g_tiered (prod_g)",
        "tier 3 is missing but is up to 15,000,000 on price_g_tiered (prod_g)",
        "tier 4 is missing but is up to inf on price_g_tiered (prod_g)",
    ]


volumes = st.lists(st.integers(1, 10**9), min_size=0, max_size=6, unique=True).map(
    lambda vs: tuple(sorted(vs)) + (None,))


@given(volumes, volumes)
def test_mismatches_are_empty_exactly_when_volumes_are_equal(a: tuple[int | None, ...],
                                                              b: tuple[int | None, ...]) -> None:
    found = tier_mismatches(a, b, "price_ref")
    assert (found == []) == (a == b)
    assert len(found) <= max(len(a), len(b))


@given(volumes)
def test_any_addon_ladder_other_than_the_main_one_is_reported_once(addon: tuple[int | None, ...]) -> None:
    snap = with_prices(clean(), Price("price_g_x", "prod_g", billing_scheme="tiered", tiers_mode="graduated",
                                      tiers=ladder(addon)))
    found = kinds(snap)
    assert found == ([] if addon == LADDER else [TIERS_DIFFER])


def test_startup_plan_rules() -> None:
    from domain.catalog_check import FREE_PLANS, MOVE, StartupItem, StartupMove, startup_plan

    startup = Price("price_a_startup", "prod_a", metadata={"plan": "startup", "valid_days": "365"})
    short = Price("price_g_startup", "prod_g", metadata={"plan": "startup", "valid_days": "30",
                                                        "move_to_price_id": "price_g_tiered"})
    snap = with_prices(clean(), startup, short)
    assert startup_plan("sub_1", [StartupItem("si_x", Price("price_a_default", "prod_a"), 0)], snap, CONFIG) is None
    plan = startup_plan("sub_1", [StartupItem("si_a", startup, 1000), StartupItem("si_g", short, 5000)], snap, CONFIG)
    assert plan is not None and plan.outcome == MOVE
    assert plan.expires_at == 5000 + 30 * 86400  # the shortest validity wins
    assert plan.moves == (StartupMove("si_a", "price_a_startup", "price_a_default"),
                          StartupMove("si_g", "price_g_startup", "price_g_tiered"))
    # A move_to price that is archived falls back to the config's default, and says so.
    gone = replace(short, metadata={**short.metadata, "move_to_price_id": "price_archived"})
    snap2 = with_prices(clean(), gone, Price("price_archived", "prod_g", active=False))
    fallback = startup_plan("sub_1", [StartupItem("si_g", gone, 0)], snap2, CONFIG)
    assert fallback is not None and fallback.moves == (StartupMove("si_g", "price_g_startup", "price_g_default"),)
    assert "missing or archived" in fallback.reason
    # Any valid_days price without plan=startup sends the customer to the free plans.
    plain = Price("price_p", "prod_a", metadata={"valid_days": "90"})
    free = startup_plan("sub_1", [StartupItem("si_a", startup, 0), StartupItem("si_p", plain, 0)],
                        with_prices(clean(), startup, plain), CONFIG)
    assert free is not None and free.outcome == FREE_PLANS and free.moves == () and free.expires_at == 90 * 86400
