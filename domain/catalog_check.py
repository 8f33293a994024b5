"""The runbook's rules for the Stripe catalog ("Stripe Products & Prices"), as pure checks.

The input is a `CatalogSnapshot` (products, prices and billing meters as plain data, read from
Stripe by `activities/catalog.py`) and the billing config; the output is a list of `Problem`s, each
naming the Stripe ids at fault and saying what to do. Nothing here talks to Stripe, so the same
rules serve `revops catalog check`, the catalog page, the scheduled check and the bespoke-price
form (which refuses tiers that break them before anything is created).

Archived products and prices are not checked for tiers or meters (nothing new can subscribe to
them), but startup metadata is checked on every price: subscriptions already on an archived
startup price still move when its `valid_days` run out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.billing_config import BillingConfig

# Problem kinds, in the order they are reported.
DUPLICATE_KEY = "duplicate_product_key"
UNKNOWN_KEY = "product_key_not_in_config"
MISSING_PRODUCT = "config_key_without_product"
BAD_VALID_DAYS = "startup_valid_days"
BAD_MOVE_TO = "startup_move_to_price"
NOT_STARTUP = "valid_days_without_startup_plan"
TIERS_DIFFER = "tier_volumes_differ"
NOT_LAST_USAGE = "metered_not_last_usage"
DEFAULT_PRICE = "default_price_unusable"

KINDS = (DUPLICATE_KEY, UNKNOWN_KEY, MISSING_PRODUCT, BAD_VALID_DAYS, BAD_MOVE_TO, NOT_STARTUP, TIERS_DIFFER,
         NOT_LAST_USAGE, DEFAULT_PRICE)

PRODUCT_KEY = "posthog_product_key"


@dataclass(frozen=True)
class Tier:
    """One tier; `up_to` None is the last tier ("inf"). Amounts are Stripe's decimal strings in
    minor units (fractions of a cent per unit are allowed)."""

    up_to: int | None
    unit_amount_decimal: str | None = None
    flat_amount_decimal: str | None = None


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    active: bool = True
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str | None:
        return self.metadata.get(PRODUCT_KEY) or None


@dataclass(frozen=True)
class Price:
    id: str
    product: str
    active: bool = True
    currency: str = "usd"
    nickname: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    recurring: bool = True
    usage_type: str | None = "licensed"  # licensed | metered; None for one-time prices
    meter: str | None = None
    billing_scheme: str = "per_unit"  # per_unit | tiered
    tiers_mode: str | None = None  # graduated | volume
    tiers: tuple[Tier, ...] = ()

    @property
    def volumes(self) -> tuple[int | None, ...]:
        return tuple(t.up_to for t in self.tiers)

    @property
    def is_tiered(self) -> bool:
        return self.billing_scheme == "tiered"


@dataclass(frozen=True)
class Meter:
    id: str
    event_name: str
    formula: str  # count | last | sum
    active: bool = True


@dataclass(frozen=True)
class CatalogSnapshot:
    products: tuple[Product, ...] = ()
    prices: tuple[Price, ...] = ()
    meters: tuple[Meter, ...] = ()

    def product(self, product_id: str) -> Product | None:
        return next((p for p in self.products if p.id == product_id), None)

    def price(self, price_id: str) -> Price | None:
        return next((p for p in self.prices if p.id == price_id), None)

    def meter(self, meter_id: str) -> Meter | None:
        return next((m for m in self.meters if m.id == meter_id), None)

    def products_with_key(self, key: str) -> list[Product]:
        return sorted((p for p in self.products if p.active and p.key == key), key=lambda p: p.id)

    def product_for_key(self, key: str) -> Product | None:
        found = self.products_with_key(key)
        return found[0] if found else None

    def tiered_prices(self, product_id: str) -> list[Price]:
        return sorted((p for p in self.prices if p.active and p.product == product_id and p.is_tiered),
                      key=lambda p: p.id)


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    ids: tuple[str, ...]

    def line(self) -> str:
        return f"{self.kind}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "ids": list(self.ids)}


def check_catalog(snapshot: CatalogSnapshot, config: BillingConfig) -> list[Problem]:
    """Every runbook rule the catalog breaks, each problem once, in a stable order."""
    problems = [
        *_product_keys(snapshot, config),
        *_startup_prices(snapshot),
        *_tier_volumes(snapshot, config),
        *_metered_prices(snapshot),
        *_default_prices(snapshot, config),
    ]
    order = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(problems, key=lambda p: (order[p.kind], p.ids))


# ---- product keys ----------------------------------------------------------------------------


def _product_keys(snapshot: CatalogSnapshot, config: BillingConfig) -> Iterable[Problem]:
    by_key: dict[str, list[Product]] = {}
    for product in snapshot.products:
        if product.active and product.key:
            by_key.setdefault(product.key, []).append(product)
    for key, products in sorted(by_key.items()):
        ids = tuple(sorted(p.id for p in products))
        if len(products) > 1:
            yield Problem(DUPLICATE_KEY,
                          f"{len(products)} active products carry posthog_product_key={key}: {', '.join(ids)}. "
                          "The billing service maps a key to one product; archive all but one.", ids)
        if key not in config.products and config.credit_product not in ids:
            yield Problem(UNKNOWN_KEY,
                          f"Product {', '.join(ids)} has posthog_product_key={key}, which the billing config "
                          "does not list; add it to the config or correct the product's metadata.", ids)
    for key in sorted(config.products):
        if key not in by_key:
            yield Problem(MISSING_PRODUCT,
                          f"The billing config lists product key {key} but no active Stripe product has "
                          f"posthog_product_key={key}; tag the product or remove the key from the config.",
                          (key,))


# ---- startup prices --------------------------------------------------------------------------


def valid_days(price: Price) -> int | None:
    """The price's `valid_days` as a positive whole number of days, or None when absent or bad."""
    raw = price.metadata.get("valid_days")
    if raw is None or not raw.strip().isdigit():
        return None
    days = int(raw.strip())
    return days if days > 0 else None


def is_startup(price: Price) -> bool:
    return price.metadata.get("plan") == "startup"


def _startup_prices(snapshot: CatalogSnapshot) -> Iterable[Problem]:
    for price in sorted(snapshot.prices, key=lambda p: p.id):
        raw_days = price.metadata.get("valid_days")
        if is_startup(price) or raw_days is not None:
            if raw_days is None:
                yield Problem(BAD_VALID_DAYS,
                              f"Startup price {price.id} (product {price.product}) has no valid_days, so its "
                              "subscriptions never move to a paid price; set valid_days to a number of days.",
                              (price.id,))
            elif valid_days(price) is None:
                yield Problem(BAD_VALID_DAYS,
                              f"Price {price.id} (product {price.product}) has valid_days={raw_days!r}; it must "
                              "be a positive whole number of days.", (price.id,))
        target_id = price.metadata.get("move_to_price_id")
        if target_id:
            target = snapshot.price(target_id)
            if target is None:
                reason = "does not exist"
            elif not target.active:
                reason = "is archived"
            elif target.product != price.product:
                reason = f"belongs to product {target.product}, not {price.product}"
            else:
                reason = ""
            if reason:
                yield Problem(BAD_MOVE_TO,
                              f"Price {price.id} has move_to_price_id={target_id}, which {reason}; its "
                              "subscriptions could not be moved when valid_days run out.", (price.id, target_id))
        if raw_days is not None and not is_startup(price):
            yield Problem(NOT_STARTUP,
                          f"Price {price.id} (product {price.product}) has valid_days but not plan=startup: "
                          "when it ends its customers fall to the free plans for all products instead of "
                          "the default prices. Set plan=startup if that is not intended.", (price.id,))


# ---- tier volumes ----------------------------------------------------------------------------


def _volume(up_to: int | None) -> str:
    return "inf" if up_to is None else f"{up_to:,}"


def tier_mismatches(volumes: Sequence[int | None], reference: Sequence[int | None], reference_id: str) -> list[str]:
    """One sentence per tier whose volume differs from the reference price's, e.g.
    "tier 3 is up to 16,000,000 but up to 15,000,000 on price_x"."""
    out = []
    for i in range(max(len(volumes), len(reference))):
        mine = _volume(volumes[i]) if i < len(volumes) else None
        theirs = _volume(reference[i]) if i < len(reference) else None
        if mine == theirs:
            continue
        if mine is None:
            out.append(f"tier {i + 1} is missing but is up to {theirs} on {reference_id}")
        elif theirs is None:
            out.append(f"tier {i + 1} (up to {mine}) has no counterpart on {reference_id}")
        else:
            out.append(f"tier {i + 1} is up to {mine} but up to {theirs} on {reference_id}")
    return out


def reference_price(prices: Sequence[Price], prefer_product: str | None = None) -> Price | None:
    """The price whose tier volumes the others should follow: one with the most common volumes
    among `prices` (ties: `prefer_product`'s prices, then the smallest price id), so one odd
    bespoke price is the one reported rather than every standard price."""
    if not prices:
        return None
    counts = Counter(p.volumes for p in prices)
    return min(prices, key=lambda p: (-counts[p.volumes], p.product != prefer_product, p.id))


def product_for(snapshot: CatalogSnapshot, config: BillingConfig, key: str) -> Product | None:
    """The product a config key means. With duplicates (reported on their own) prefer the one the
    config's default price belongs to, so one stray copy does not hide the real product's prices."""
    candidates = snapshot.products_with_key(key)
    default = snapshot.price(config.products[key].price) if key in config.products else None
    if default is not None:
        for product in candidates:
            if product.id == default.product:
                return product
    return candidates[0] if candidates else None


def _families(snapshot: CatalogSnapshot, config: BillingConfig) -> Iterable[tuple[Product, list[Product]]]:
    for key in sorted(config.products):
        addon_keys = config.addons_of(key)
        main = product_for(snapshot, config, key)
        if main is None or not addon_keys:
            continue
        addons = [p for k in addon_keys if (p := product_for(snapshot, config, k)) is not None]
        if addons:
            yield main, addons


def _tier_volumes(snapshot: CatalogSnapshot, config: BillingConfig) -> Iterable[Problem]:
    for main, addons in _families(snapshot, config):
        family = snapshot.tiered_prices(main.id) + [p for addon in addons for p in snapshot.tiered_prices(addon.id)]
        reference = reference_price(family, prefer_product=main.id)
        if reference is None:
            continue
        for price in family:
            if price.id == reference.id or price.volumes == reference.volumes:
                continue
            where = "its main product's" if price.product != main.id else "the product's other prices and add-ons'"
            details = "; ".join(tier_mismatches(price.volumes, reference.volumes, reference.id))
            yield Problem(TIERS_DIFFER,
                          f"Price {price.id} (product {price.product}) has tier volumes that differ from "
                          f"{where} (family of {main.id}): {details}. Add-on and main product tiers must have the same "
                          "volumes or the billing service errors.", (price.id, reference.id))


def bespoke_tier_mismatches(snapshot: CatalogSnapshot, config: BillingConfig, product_id: str,
                            volumes: Sequence[int | None]) -> list[str]:
    """Why tiers with these volumes may not be added to `product_id`: for an add-on, where they
    differ from the main product's prices; for a main product, from each add-on's prices."""
    product = snapshot.product(product_id)
    key = product.key if product else None
    if key is None or key not in config.products:
        return []
    main_key = config.products[key].addon_of
    compare_with: list[Product] = []
    if main_key is not None:
        main = product_for(snapshot, config, main_key)
        compare_with = [main] if main else []
    else:
        compare_with = [p for k in config.addons_of(key) if (p := product_for(snapshot, config, k)) is not None]
    out: list[str] = []
    for other in compare_with:
        reference = reference_price(snapshot.tiered_prices(other.id))
        if reference is not None:
            out.extend(tier_mismatches(volumes, reference.volumes, f"{reference.id} ({other.id})"))
    return out


# ---- metered prices --------------------------------------------------------------------------


def _metered_prices(snapshot: CatalogSnapshot) -> Iterable[Problem]:
    for price in sorted(snapshot.prices, key=lambda p: p.id):
        if not price.active or price.usage_type != "metered":
            continue
        meter = snapshot.meter(price.meter) if price.meter else None
        if price.meter is None:
            yield Problem(NOT_LAST_USAGE,
                          f"Metered price {price.id} (product {price.product}) has no billing meter; give it "
                          "a meter whose aggregation is `last` (most recent usage).", (price.id,))
        elif meter is None:
            yield Problem(NOT_LAST_USAGE,
                          f"Metered price {price.id} (product {price.product}) uses billing meter "
                          f"{price.meter}, which does not exist.", (price.id, price.meter))
        elif meter.formula != "last":
            yield Problem(NOT_LAST_USAGE,
                          f"Metered price {price.id} (product {price.product}) uses billing meter {meter.id} "
                          f"which aggregates with `{meter.formula}`; it must be `last` (most recent usage) "
                          "because the billing service reports the full count every day.", (price.id, meter.id))


# ---- default prices --------------------------------------------------------------------------


def _default_prices(snapshot: CatalogSnapshot, config: BillingConfig) -> Iterable[Problem]:
    for key, product_config in sorted(config.products.items()):
        price_id = product_config.price
        price = snapshot.price(price_id)
        products = [p.id for p in snapshot.products_with_key(key)]
        if price is None:
            reason = "does not exist in Stripe"
        elif not price.active:
            reason = "is archived"
        elif products and price.product not in products:
            reason = f"belongs to product {price.product}, not {', '.join(products)}"
        else:
            continue
        yield Problem(DEFAULT_PRICE,
                      f"The billing config's default price for {key}, {price_id}, {reason}; new subscriptions "
                      "to that product would fail.", (price_id,))


# ---- bespoke prices --------------------------------------------------------------------------

# Stripe takes at most 12 decimal places in `unit_amount_decimal` (minor units).
MAX_UNIT_DECIMALS = 12


@dataclass(frozen=True)
class BespokePrice:
    """A request for a custom tiered price on an existing product (runbook "Creating new or
    bespoke prices"): recurring, metered on a `last` meter, graduated tiers."""

    product: str
    tiers: tuple[Tier, ...]
    currency: str = "usd"
    interval: str = "month"
    meter: str | None = None  # None: the product's usage meter (found or made with `last`)
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def volumes(self) -> tuple[int | None, ...]:
        return tuple(t.up_to for t in self.tiers)


class BespokeRefused(ValueError):
    """The bespoke price breaks a rule; `problems` lists each, as sentences."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("The price was not created: " + "; ".join(problems) + ".")
        self.problems = list(problems)


def _major_to_minor_text(text: str, digits: int, what: str) -> tuple[str | None, str | None]:
    """A per-unit amount in major units ("0.00005") as Stripe's minor-unit decimal string."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        return None, f"{what} {text!r} is not a number"
    if not value.is_finite() or value < 0:
        return None, f"{what} {text!r} must be zero or more"
    minor = value.scaleb(digits).normalize()
    exponent = minor.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_UNIT_DECIMALS:
        return None, (f"{what} {text!r} has more precision than Stripe keeps "
                      f"({MAX_UNIT_DECIMALS} decimals of a minor unit)")
    return format(minor, "f"), None


def parse_tier_rows(rows: Sequence[Mapping[str, Any]], currency: str) -> tuple[tuple[Tier, ...], list[str]]:
    """Tiers as a person enters them, one row each: `up_to` (units; blank or "inf" on the last row),
    `unit_amount` (major units per unit, e.g. "0.00005") and optional `flat_amount` (major units).
    Fully blank rows are skipped (a form has spare rows). Returns the tiers and one sentence per
    problem, naming the row."""
    from domain.money import MoneyError, exponent, parse_amount

    digits = exponent(currency)
    filled = [r for r in rows if any(str(r.get(k) or "").strip() for k in ("up_to", "unit_amount", "flat_amount"))]
    errors: list[str] = []
    tiers: list[Tier] = []
    previous = 0
    if not filled:
        return (), ["enter at least one tier"]
    for n, row in enumerate(filled, start=1):
        last = n == len(filled)
        raw_up_to = str(row.get("up_to") or "").strip().replace(",", "").replace("_", "")
        up_to: int | None = None
        if raw_up_to in ("", "inf"):
            if not last:
                errors.append(f"tier {n} needs an `up to` volume: only the last tier is unbounded")
        elif not raw_up_to.isdigit() or int(raw_up_to) <= 0:
            errors.append(f"tier {n}'s `up to` {raw_up_to!r} must be a positive whole number of units")
        elif last:
            errors.append(f"the last tier (tier {n}) must be unbounded (leave `up to` empty), not {raw_up_to}")
        elif int(raw_up_to) <= previous:
            errors.append(f"tier {n}'s `up to` {int(raw_up_to):,} must be above tier {n - 1}'s {previous:,}")
        else:
            up_to = previous = int(raw_up_to)
        unit_text = str(row.get("unit_amount") or "").strip() or "0"
        unit, problem = _major_to_minor_text(unit_text, digits, f"tier {n}'s unit amount")
        if problem:
            errors.append(problem)
        flat: str | None = None
        flat_text = str(row.get("flat_amount") or "").strip()
        if flat_text:
            try:
                flat = str(parse_amount(flat_text, currency))
            except MoneyError as exc:
                errors.append(f"tier {n}'s flat amount: {exc}")
        tiers.append(Tier(up_to=up_to, unit_amount_decimal=unit, flat_amount_decimal=flat))
    return tuple(tiers), errors


def bespoke_price_problems(snapshot: CatalogSnapshot, config: BillingConfig, request: BespokePrice) -> list[str]:
    """Every reason the bespoke price may not be made, as sentences (empty: go ahead)."""
    problems: list[str] = []
    product = snapshot.product(request.product)
    if product is None:
        return [f"product {request.product} does not exist; bespoke prices go on an existing product "
                "(never a new one)"]
    if not product.active:
        problems.append(f"product {product.id} is archived")
    if product.key is None or product.key not in config.products:
        problems.append(f"product {product.id} is not a billable product of the billing config "
                        f"(posthog_product_key={product.key or 'unset'})")
    if request.interval not in ("month", "year"):
        problems.append(f"the interval {request.interval!r} must be month or year")
    if request.meter is not None:
        meter = snapshot.meter(request.meter)
        if meter is None:
            problems.append(f"billing meter {request.meter} does not exist")
        elif not meter.active:
            problems.append(f"billing meter {meter.id} is inactive")
        elif meter.formula != "last":
            problems.append(f"billing meter {meter.id} aggregates with `{meter.formula}`; a bespoke price must bill "
                            "the most recent usage (`last`)")
    if not request.tiers:
        problems.append("enter at least one tier")
    problems.extend(bespoke_tier_mismatches(snapshot, config, product.id, request.volumes))
    return problems


# ---- startup plans ---------------------------------------------------------------------------

DAY_SECONDS = 86400
MOVE = "move"
FREE_PLANS = "free_plans"


@dataclass(frozen=True)
class StartupItem:
    """A subscription item as the startup rules see it: since when it holds which price."""

    item: str
    price: Price
    since: int  # unix seconds: when the item was added


@dataclass(frozen=True)
class StartupMove:
    item: str
    from_price: str
    to_price: str


@dataclass(frozen=True)
class StartupPlan:
    """What happens to a subscription when its shortest `valid_days` run out."""

    subscription: str
    expires_at: int  # unix seconds
    outcome: str  # MOVE | FREE_PLANS
    moves: tuple[StartupMove, ...]
    reason: str


def startup_plan(subscription: str, items: Sequence[StartupItem], snapshot: CatalogSnapshot,
                 config: BillingConfig) -> StartupPlan | None:
    """Runbook: a price with `valid_days` is valid for that many days; with several, the shortest
    wins and all of them reset together. A `plan=startup` price moves to its `move_to_price_id`,
    else to the config's default price for its product; a price without `plan=startup` sends its
    customer to the free plans for all products. None: no item has `valid_days`."""
    timed = [(i, days) for i in items if (days := valid_days(i.price)) is not None]
    if not timed:
        return None
    expires_at = min(i.since + days * DAY_SECONDS for i, days in timed)
    not_startup = sorted(i.price.id for i, _ in timed if not is_startup(i.price))
    if not_startup:
        return StartupPlan(subscription, expires_at, FREE_PLANS, (),
                           f"price {', '.join(not_startup)} has valid_days but not plan=startup, so when it "
                           "ends the customer goes to the free plans for all products (runbook)")
    moves: list[StartupMove] = []
    notes: list[str] = []
    for item, _ in sorted(timed, key=lambda t: t[0].item):
        target_id = item.price.metadata.get("move_to_price_id")
        target = snapshot.price(target_id) if target_id else None
        if target_id and target is not None and target.active:
            moves.append(StartupMove(item.item, item.price.id, target.id))
            notes.append(f"{item.price.id} → {target.id} (its move_to_price_id)")
            continue
        product = snapshot.product(item.price.product)
        key = product.key if product else None
        default = config.products[key].price if key in config.products else None
        if default is None:
            return StartupPlan(subscription, expires_at, FREE_PLANS, (),
                               f"price {item.price.id} has no usable move_to_price_id and its product "
                               f"{item.price.product} has no default price in the billing config, so the "
                               "customer goes to the free plans")
        why = f"its move_to_price_id {target_id} is missing or archived, so " if target_id else ""
        moves.append(StartupMove(item.item, item.price.id, default))
        notes.append(f"{item.price.id} → {default} ({why}the config's default price)")
    return StartupPlan(subscription, expires_at, MOVE, tuple(moves), "; ".join(notes))
