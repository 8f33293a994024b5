"""Plan input that cannot turn into wrong money: issue 11 (#4, #9, #12) and issue 17 (#1–#3, #5, #7).

Every door (API, table form, CSV import, PandaDoc intake) validates through `validate_plan`, so
these rules are tested here once, on the pure functions; `tests/intake/test_order_forms.py`
drives the same rules through the PandaDoc sandbox and the intake workflow.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain.money import MAX_MAJOR_UNITS, MoneyError, exponent, parse_amount
from domain.plan_input import (
    CONTROL_KEYS,
    DOCUMENT_ERROR_KEY,
    INPUT_FIELDS,
    parse_date,
    stored_as_input,
    validate_plan,
)

VALID = {
    "company_name": "Hedgehog Labs", "customer_email": "billing@hedgehog.example",
    "credit_amount": "120000.00", "discount": "20", "price": "96000.00", "start_date": "2026-12-01",
    "term_months": "12 months",
}
USD_ROW: dict[str, Any] = {
    "pandadoc_id": None, "company_name": "Hedgehog Labs", "customer_email": "billing@hedgehog.example",
    "credit_amount": 12_000_000, "discount": Decimal("20.000"), "price": 9_600_000, "currency": "usd",
    "start_date": date(2026, 12, 1), "term_months": 12, "posthog_org_id": "org-hedgehog",
    "payment_schedule": "upfront", "credit_start": "immediately", "credit_release": "all",
    "payment_terms_days": 30, "products": [], "stripe_customer_id_existing": None,
}


# ------------------------------------------------------------ issue 11 #4: currency-only edit

@pytest.mark.parametrize("currency", ["jpy", "bhd", "eur"])
def test_issue11_4_a_currency_only_edit_asks_for_both_amounts(currency: str) -> None:
    # Old code: {"currency": "jpy"} on a 96,000.00 USD row kept 9,600,000 minor units → ¥9,600,000.
    checked = validate_plan({"currency": currency}, existing=USD_ROW)
    assert not checked.ok
    message = checked.errors["currency"]
    assert f"from USD to {currency.upper()}" in message
    assert "price" in message and "credit amount" in message
    # One amount is not enough either: the other would still be misread.
    assert "currency" in validate_plan({"currency": currency, "price": "96000"}, existing=USD_ROW).errors


def test_issue11_4_a_currency_change_with_both_amounts_is_read_in_the_new_currency() -> None:
    checked = validate_plan({"currency": "jpy", "price": "14,000,000", "credit_amount": "17,500,000"},
                            existing=USD_ROW)
    assert checked.errors == {}
    assert checked.values == {"currency": "jpy", "price": 14_000_000, "credit_amount": 17_500_000}
    # The same currency, or any other field, needs nothing more.
    assert validate_plan({"currency": "USD"}, existing=USD_ROW).errors == {}
    assert validate_plan({"company_name": "Hedgehog Labs Inc"}, existing=USD_ROW).errors == {}


# ------------------------------------------------------------ issue 11 #9: bounded dates

@pytest.mark.parametrize("text", ["9999-12-25", "0001-01-01", "1999-12-31", "2100-01-01",
                                  "9999-12-25T00:00:00.000Z", "25 Dec 9999"])
def test_issue11_9_dates_outside_this_century_are_refused_with_a_sentence(text: str) -> None:
    checked = validate_plan({**VALID, "start_date": text})
    assert "2000–2099" in checked.errors["start_date"] and repr(text) in checked.errors["start_date"]
    assert "start_date" not in checked.values


def test_issue11_9_stored_dates_are_bounded_too() -> None:
    with pytest.raises(ValueError, match="2000–2099"):
        parse_date(date(9999, 12, 25))
    assert parse_date("2099-12-31") == date(2099, 12, 31) and parse_date("2000-01-01") == date(2000, 1, 1)


# ------------------------------------------------------------ issue 11 #12: hostile JSON

@pytest.mark.parametrize(("field", "value", "words"), [
    ("price", 96000.0, "send money as a decimal string, e.g. \"96000.00\""),
    ("credit_amount", 1.5e5, "send money as a decimal string"),
    ("price", ["96000.00"], "must be a decimal string"),
    ("price", {"amount": "96000.00"}, "must be a decimal string"),
    ("price", True, "must be a decimal string"),
    ("price", 2**63, "more than 1,000,000,000,000 USD"),
    ("price", "9223372036854775808", "more than 1,000,000,000,000 USD"),
    ("credit_amount", "1000000000000.01", "more than 1,000,000,000,000 USD"),
    ("price", "1e6", "is not an amount"),
    ("price", "Infinity", "is not an amount"),
    ("price", "٩٦٠٠٠", "is not an amount"),  # Arabic-Indic digits: not what any door sends
    ("discount", "NaN", "not a percentage"),
    ("discount", "Infinity", "not a percentage"),
    ("discount", "-Infinity", "not a percentage"),
    ("discount", 12.5, "send the discount as text"),
    ("discount", "12.3456", "more than 3 decimal places"),
    ("discount", "%", "not a percentage"),
    ("products", 5, "must be a list of product keys"),
    ("products", [1, 2], "must be a list of product keys (text)"),
    ("products", {"a": 1}, "must be a list of product keys"),
    ("company_name", {"name": "Acme"}, "must be text, not an object"),
    ("company_name", ["Acme"], "must be text, not a list"),
    ("company_name", "A" * 201, "longer than 200 characters"),
    ("company_name", "Acme\x00Inc", "control characters"),
    ("posthog_org_id", "o" * 65, "longer than 64 characters"),
    ("term_months", 1.5, "is not a term"),
    ("term_months", True, "is not a term"),
    ("term_months", "1.5 years", "is not a term"),
    ("term_months", 10**100, "outside 1–120 months"),
    ("customer_email", 12, "must be text, not a number"),
    ("customer_email", ["a@b.co"], "must be text, not a list"),
    ("currency", ["usd"], "must be text, not a list"),
    ("currency", 840, "must be text, not a number"),
    ("start_date", 20261201, "is not a date"),
    ("start_date", {"y": 2026}, "is not a date"),
    ("payment_terms_days", 30.5, "is not a number of days"),
    ("payment_terms_days", "3_0", "is not a number of days"),
    ("payment_terms_days", False, "is not a number of days"),
    ("payment_schedule", ["upfront"], "must be text"),
    ("stripe_customer_id_existing", {"id": "cus_1"}, "must be text"),
])
def test_issue11_12_hostile_json_is_an_error_on_the_field_that_carried_it(field: str, value: Any, words: str) -> None:
    checked = validate_plan({**VALID, field: value})
    assert field in checked.errors, checked
    assert words in checked.errors[field]
    assert field not in checked.values
    # A currency that failed leaves the amounts unreadable too (never read as dollars).
    assert set(checked.errors) == {field} | ({"price", "credit_amount"} if field == "currency" else set())


def test_issue11_12_a_body_that_is_not_an_object_and_unknown_keys_are_errors() -> None:
    assert "JSON object" in validate_plan(["price"]).errors["plan"]  # type: ignore[arg-type]
    assert validate_plan({**VALID, "colour": "red"}).errors == {"colour": "'colour' is not a plan field."}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40) | st.sampled_from(["NaN", "Infinity", "-1", "0", "1e400", "1,234", "12/01/2026",
                                             "9999-12-25", "€120.000", "$1", " ", "usd", "cus_1", "%"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
plan_keys = st.sampled_from([*INPUT_FIELDS, *CONTROL_KEYS, "unknown_key"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(plan_keys, json_values, max_size=8), as_edit=st.booleans(),
       locale=st.none() | st.sampled_from(["de-DE", "en-US", "xx", ""]))
@example(changes={"price": 96000.0}, as_edit=False, locale=None)
@example(changes={"discount": "NaN", "price": 2**64}, as_edit=True, locale=None)
def test_issue11_12_any_json_value_in_any_field_gives_field_errors_never_an_exception(
        changes: dict[str, Any], as_edit: bool, locale: str | None) -> None:
    data = {**({} if as_edit else VALID), **changes}
    checked = validate_plan(data, existing=USD_ROW if as_edit else None, locale=locale,
                            known_products={"product_analytics", "session_replay"})
    for name in [*checked.errors, *checked.warnings]:
        assert name in INPUT_FIELDS or name in data or name == DOCUMENT_ERROR_KEY, name  # keyed by the field at fault
    for name, message in checked.errors.items():
        assert isinstance(message, str) and message.strip()
        assert name not in checked.values
    # What did parse is typed the way the store keeps it: money in int minor units, never a float.
    for name in ("price", "credit_amount"):
        if name in checked.values:
            assert type(checked.values[name]) is int and 0 < checked.values[name] <= MAX_MAJOR_UNITS * 1000
    if "discount" in checked.values:
        assert isinstance(checked.values["discount"], Decimal) and checked.values["discount"].is_finite()
    if "start_date" in checked.values:
        assert date(2000, 1, 1) <= checked.values["start_date"] <= date(2099, 12, 31)
    if "term_months" in checked.values:
        assert type(checked.values["term_months"]) is int
    json.dumps({k: str(v) for k, v in checked.values.items()})


# ------------------------------------------------------------ issue 17 #1: European amounts

@pytest.mark.parametrize(("text", "currency", "locale", "minor"), [
    ("120.000,00", "eur", None, 12_000_000),
    ("€120.000", "eur", None, 12_000_000),
    ("120.000 €", "eur", None, 12_000_000),
    ("120 000,00", "eur", None, 12_000_000),
    ("120\u00a0000,00\u00a0€", "eur", None, 12_000_000),
    ("120\u202f000,00 EUR", "eur", None, 12_000_000),
    ("1.234.567,89", "eur", None, 123_456_789),
    ("120'000.00", "chf", None, 12_000_000),
    ("CHF 120’000.50", "chf", None, 12_000_050),
    ("$96,000.00", "usd", None, 9_600_000),
    ("96,000", "usd", None, 9_600_000),
    ("USD 96000", "usd", None, 9_600_000),
    ("€96,000", "eur", "en-IE", 9_600_000),     # an Irish form groups with commas
    ("¥1,200,000", "jpy", None, 1_200_000),
    ("1.234,567", "bhd", None, 1_234_567),       # both marks: the structure settles it
    ("BD 1,234.567", "bhd", None, 1_234_567),
    ("1.234", "bhd", "en-BH", 1_234),
    ("1.234", "bhd", "de-DE", 1_234_000),
    ("12,34,567.00", "inr", None, 123_456_700),  # Indian grouping
])
def test_issue17_1_amounts_are_read_by_the_currencys_conventions(
        text: str, currency: str, locale: str | None, minor: int) -> None:
    assert parse_amount(text, currency, locale=locale) == minor


@pytest.mark.parametrize(("text", "currency", "locale", "words"), [
    ("1,234", "eur", None, "could mean 1234 or 1.234 EUR"),
    ("€96,000", "eur", None, "could mean 96000 or 96.000 EUR"),
    ("120.000", "usd", None, "could mean 120000 or 120.000 USD"),
    ("120.000", "jpy", None, "could mean 120000 or 120.000 JPY"),
    ("1.234", "bhd", None, "could mean 1234 or 1.234 BHD"),
    ("1,234", "usd", "xx-YY", "could mean 1234 or 1.234 USD"),  # a locale we do not know settles nothing
    ("120.000", "eur", "en-IE", "could mean"),
    ("96000.000", "usd", None, "three decimal places"),
    ("1,2,3", "usd", None, "not grouped in thousands"),
    ("1,234.567,89", "usd", None, "mixes its separators"),
    ("1..5", "usd", None, "two separators in a row"),
])
def test_issue17_1_amounts_that_could_be_read_two_ways_are_refused(
        text: str, currency: str, locale: str | None, words: str) -> None:
    with pytest.raises(MoneyError, match=words.replace(".", r"\.").replace("(", r"\(")):
        parse_amount(text, currency, locale=locale)


def test_issue17_1_the_same_parser_serves_validate_plan() -> None:
    checked = validate_plan({**VALID, "currency": "EUR", "credit_amount": "150.000,00", "price": "€120.000"})
    assert checked.errors == {} and checked.values["price"] == 12_000_000
    refused = validate_plan({**VALID, "currency": "eur", "price": "1,234", "credit_amount": "2.000,00"})
    assert "could mean 1234 or 1.234 EUR" in refused.errors["price"]


SIGNS = {"usd": ["$", "US$", "USD"], "eur": ["€", "EUR"], "gbp": ["£", "GBP"], "chf": ["CHF", "Fr."],
         "jpy": ["¥", "JPY"], "bhd": ["BD", "BHD"], "sek": ["kr", "SEK"], "inr": ["₹", "INR"],
         "krw": ["₩", "KRW"], "tnd": ["DT", "TND"], "pln": ["zł", "PLN"]}
GROUPS = [None, ",", ".", " ", "'", "\u00a0", "\u202f", "’"]


def _written(minor: int, currency: str, group: str | None, mark: str, decimals: str, sign: str | None,
             sign_after: bool, space: bool, lower: bool) -> str:
    """`minor` written the way a person might: grouping, decimal mark, decimals, sign or code."""
    digits = exponent(currency)
    whole, fraction = divmod(minor, 10**digits)
    text = f"{whole:,}".replace(",", group or "")
    fraction_text = str(fraction).rjust(digits, "0") if digits else ""
    if decimals == "trimmed":
        fraction_text = fraction_text.rstrip("0")
    if fraction_text and decimals != "none":
        text += mark + fraction_text
    if sign:
        sign = sign.lower() if lower and sign.isalpha() else sign
        text = f"{text}{' ' if space else ''}{sign}" if sign_after else f"{sign}{' ' if space else ''}{text}"
    return text


@settings(max_examples=3000, deadline=None)
@given(currency=st.sampled_from(sorted(SIGNS)), data=st.data(), group=st.sampled_from(GROUPS),
       mark=st.sampled_from([".", ","]), decimals=st.sampled_from(["all", "trimmed", "none"]),
       sign_after=st.booleans(), space=st.booleans(), lower=st.booleans(),
       hinted=st.booleans())
def test_issue17_1_amounts_written_any_way_parse_to_the_exact_value_or_are_refused(
        currency: str, data: st.DataObject, group: str | None, mark: str, decimals: str, sign_after: bool,
        space: bool, lower: bool, hinted: bool) -> None:
    digits = exponent(currency)
    minor = data.draw(st.integers(min_value=1, max_value=MAX_MAJOR_UNITS * 10**digits) |
                      st.integers(min_value=1, max_value=10**7), label="minor")
    if decimals == "none" and digits:
        minor -= minor % 10**digits  # whole amounts only: leaving the decimals out drops nothing
        minor = minor or 10**digits
    if group == mark:
        group = None  # nobody groups with their decimal mark
    sign = data.draw(st.none() | st.sampled_from(SIGNS[currency]), label="sign")
    text = _written(minor, currency, group, mark, decimals, sign, sign_after, space, lower)
    # The writer's locale, when the form states it, is one that writes decimals with `mark`.
    locale = ("en-US" if mark == "." else "de-DE") if hinted else None
    try:
        parsed = parse_amount(text, currency, locale=locale)
    except MoneyError:
        return  # refused: goes to a person
    assert parsed == minor, f"{text!r} in {currency} read as {parsed}, written from {minor}"


def test_issue17_1_the_usual_ways_of_writing_are_not_all_refused() -> None:
    # The property above also holds for a parser that refuses everything; these must be read.
    for currency, texts in {
        "usd": ["$96,000.00", "96000", "USD 96,000", "96 000.00 USD"],
        "eur": ["96.000,00 €", "€96.000", "96 000,00 EUR", "96000,5"],
        "gbp": ["£96,000", "96,000.00 GBP"], "chf": ["CHF 96'000.00", "96’000 Fr."],
        "jpy": ["¥96,000", "96000 JPY"], "bhd": ["BD 96,000.000", "96 000,000 BHD"],
    }.items():
        for text in texts:
            assert parse_amount(text, currency) in (9_600_000, 9_600_050, 96_000, 96_000_000), (text, currency)


# ------------------------------------------------------------ issue 17 #2: day-first dates

@pytest.mark.parametrize(("text", "currency", "locale", "expected"), [
    ("2026-12-01T00:00:00.000Z", "eur", None, date(2026, 12, 1)),
    ("2026-12-01T00:00:00+01:00", "eur", None, date(2026, 12, 1)),
    ("1 Dec 2026", "gbp", None, date(2026, 12, 1)),
    ("1st December 2026", "gbp", None, date(2026, 12, 1)),
    ("December 1, 2026", "gbp", None, date(2026, 12, 1)),
    ("01.12.2026", "eur", None, date(2026, 12, 1)),
    ("13/12/2026", "gbp", None, date(2026, 12, 13)),
    ("12/13/2026", "gbp", None, date(2026, 12, 13)),
    ("05/05/2026", "eur", None, date(2026, 5, 5)),
    ("01/12/2026", "gbp", "en-GB", date(2026, 12, 1)),
    ("01/12/2026", "eur", "fr_FR", date(2026, 12, 1)),
    ("01/12/2026", "gbp", "en-US", date(2026, 1, 12)),
    ("12/01/2026", "usd", None, date(2026, 12, 1)),   # the seller's own (Zapier table) convention
])
def test_issue17_2_dates_are_read_as_written(text: str, currency: str, locale: str | None, expected: date) -> None:
    checked = validate_plan({**VALID, "currency": currency, "start_date": text}, locale=locale)
    assert checked.errors.get("start_date") is None, checked.errors
    assert checked.values["start_date"] == expected


@pytest.mark.parametrize(("text", "currency", "locale"), [
    ("01/12/2026", "gbp", None), ("01/12/2026", "eur", None), ("01-12-2026", "gbp", None),
    ("01/12/2026", "cad", "en-CA"), ("12/01/2026", "usd", "en"),
])
def test_issue17_2_a_day_and_month_that_could_swap_are_refused_without_a_locale(
        text: str, currency: str, locale: str | None) -> None:
    checked = validate_plan({**VALID, "currency": currency, "start_date": text}, locale=locale)
    message = checked.errors["start_date"]
    assert "1 December 2026" in message and "12 January 2026" in message and "locale" in message
    assert "start_date" not in checked.values


def test_issue17_2_without_any_hint_a_swappable_date_is_an_error() -> None:
    with pytest.raises(ValueError, match="could be 1 December 2026 or 12 January 2026"):
        parse_date("01/12/2026")
    assert parse_date("2026-12-1") == parse_date("2026/12/01") == date(2026, 12, 1)


def test_issue17_2_intake_passes_the_forms_locale_in_the_data() -> None:
    checked = validate_plan({**VALID, "currency": "gbp", "start_date": "01/12/2026", "_locale": "en-GB"})
    assert checked.values["start_date"] == date(2026, 12, 1)
    assert "_locale" in validate_plan({**VALID, "_locale": {"x": 1}}).errors


# ------------------------------------------------------------ issue 17 #3: discount 0.2

def test_issue17_3_a_discount_between_0_and_1_is_flagged_and_the_price_is_not_blamed() -> None:
    checked = validate_plan({**VALID, "discount": "0.2"})
    assert checked.warnings == {"discount": "0.2 looks like a fraction; did you mean 20%? Write the discount as a "
                                            "percentage, or confirm 0.2% is right."}
    # A price that fits neither reading is still questioned, as before.
    both = validate_plan({**VALID, "discount": "0.2", "price": "50000.00"})
    assert set(both.warnings) == {"discount", "price"}
    # Written with a percent sign, 0.5% is what the person meant; confirmed, nothing is flagged.
    assert "discount" not in validate_plan({**VALID, "discount": "0.5 %", "price": "119400.00"}).warnings
    assert validate_plan({**VALID, "discount": "0.2", "accept_warnings": True}).warnings == {}
    assert validate_plan({**VALID, "discount": "0.2", "accept_warnings": "false"}).warnings != {}


# ------------------------------------------------------------ issue 17 #5: contradicting sign

@pytest.mark.parametrize(("text", "currency"), [("$120,000", "eur"), ("£96,000", "usd"), ("€1.000", "chf"),
                                                 ("96000 USD", "eur"), ("US$96,000", "cad"), ("¥96000", "krw")])
def test_issue17_5_a_currency_sign_that_contradicts_the_currency_is_an_error(text: str, currency: str) -> None:
    checked = validate_plan({**VALID, "currency": currency, "price": text})
    assert "the plan's currency" in checked.errors["price"] and currency.upper() in checked.errors["price"]
    assert "price" not in checked.values
    assert parse_amount("$96,000", "cad") == 9_600_000  # a bare $ is a Canadian form's own sign


# ------------------------------------------------------------ issue 17 #7: failed fields stay empty

def test_issue17_7_fields_that_failed_get_no_default_and_are_named() -> None:
    checked = validate_plan({**VALID, "currency": "euro", "term_months": "forever", "discount": "lots"})
    assert checked.failed == {"currency", "term_months", "discount", "price", "credit_amount"}
    for name in checked.failed:
        assert name not in checked.values  # not usd, not 12, not 0, not amounts read as dollars
    assert "until the plan's currency is known" in checked.errors["price"]


def test_issue17_7_fixing_one_field_leaves_the_others_pending_not_defaulted() -> None:
    stored = {**USD_ROW, "currency": None, "price": None, "credit_amount": None, "term_months": None}
    failed = {"currency", "price", "credit_amount", "term_months"}
    # A person fixes the currency and the amounts; the term is still waiting for them.
    edit = validate_plan({"currency": "eur", "price": "96.000,00", "credit_amount": "120.000,00"},
                         existing=stored, unresolved=failed)
    assert edit.ok and not edit.complete
    assert edit.values == {"currency": "eur", "price": 9_600_000, "credit_amount": 12_000_000}
    assert set(edit.pending) == {"term_months"}
    # Re-checking the whole stored row reports the empty term instead of filling in 12 months.
    whole = validate_plan(stored_as_input({**stored, **edit.values}), existing={}, unresolved={"term_months"})
    assert whole.errors == {"term_months": "Term is required."} and "term_months" not in whole.values
    # A blank value for a failed field with a default (currency, discount) is an error, not the default.
    blank = validate_plan({**VALID, "currency": "", "discount": ""}, unresolved={"currency", "discount"})
    assert {"currency", "discount"} <= set(blank.errors)


def test_stored_rows_round_trip_through_stored_as_input() -> None:
    whole = validate_plan(stored_as_input(USD_ROW), existing={})
    assert whole.errors == {} and whole.warnings == {}
    assert {k: whole.values[k] for k in ("price", "credit_amount", "discount", "start_date")} == {
        "price": 9_600_000, "credit_amount": 12_000_000, "discount": Decimal(20), "start_date": date(2026, 12, 1)}
