"""Money: integer minor units plus an ISO currency. `Decimal` only when parsing or printing.

Exponents follow Stripe's currency list: most currencies have 2 decimals, the zero-decimal ones
(JPY, KRW, …) none, and the three-decimal ones (BHD, KWD, …) three.

Amounts arrive as text a person typed (forms, CSV cells, PandaDoc tokens), in whatever convention
their country writes numbers: `96,000.00`, `120.000,00`, `120 000,00`, `120'000.00`, `€120.000`.
`parse_amount` reads each by its structure where only one reading exists, by the currency's (or the
form's locale's) convention where the structure leaves the role of a `.` or `,` open, and refuses
what neither settles. A refused amount goes to a person; a misread one bills the wrong money.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())
# Currencies Stripe settles in that a contract here may use; extend when sales does.
CURRENCIES = frozenset(
    """usd eur gbp cad aud nzd chf sek nok dkk pln czk huf ron bgn isk ils aed sar inr sgd hkd
    mxn brl ars cop pen zar egp ngn kes thb myr idr php twd cny try uah""".split()
) | ZERO_DECIMAL | THREE_DECIMAL

# No contract is worth more than a trillion major units; a bigger figure is a typo (or hostile
# input), and the cap keeps every amount far inside a signed 64-bit column (2^63 − 1 minor units).
MAX_MAJOR_UNITS = 10**12
# Longer text than this is not an amount anyone typed; refusing it early keeps parsing cheap.
MAX_AMOUNT_TEXT = 64

# Where a lone `.` or `,` followed by three digits could group thousands or mark decimals, the
# currency's usual convention decides: the mark it writes decimals with. Continental European
# currencies write `1.234,56`; the English-speaking, East Asian and Gulf ones `1,234.56`. Where a
# currency is written both ways in daily use (ZAR, PEN), nothing settles it without a locale.
# EUR follows the continent; an Irish or Maltese form settles it with its locale (`en-IE`).
_COMMA_DECIMAL_CURRENCIES = frozenset(
    """eur sek nok dkk pln czk huf ron bgn isk try uah brl ars cop idr vnd clp pyg xaf xof xpf kmf
    djf gnf bif mga rwf""".split()
)
_EITHER_DECIMAL_CURRENCIES = frozenset("zar pen".split())

# Locales: the language's decimal mark, then regions that write it otherwise.
_COMMA_DECIMAL_LANGUAGES = frozenset(
    """de fr es it nl pt da sv nb nn no fi pl cs sk hu ro bg ru uk tr el id vi hr sl sr lt lv et is
    ca eu gl af""".split()
)
_DOT_DECIMAL_LANGUAGES = frozenset("en ja zh ko th he hi ms ga mt fil tl ar".split())
_REGION_DECIMAL = {
    # Swiss and Liechtenstein amounts are written 1'234.50 in every language there.
    "ch": ".", "li": ".",
    # Spanish-speaking countries that write 1,234.56.
    "mx": ".", "us": ".", "pr": ".", "gt": ".", "hn": ".", "ni": ".", "sv": ".", "do": ".", "pa": ".",
    "pe": ".",
    # South Africa writes 1 234,56 in English too.
    "za": ",",
}

# Currency signs and the currencies each can stand for. A sign names the plan's currency or
# contradicts it ("$120,000" on a EUR form is an error, not euros). Bare "$" is the dollar or peso
# of many countries, so it agrees with any of them; "US$" only with the US dollar.
_SIGNS: dict[str, frozenset[str]] = {
    "$": frozenset("usd cad aud nzd sgd hkd mxn ars cop clp twd".split()),
    "us$": frozenset({"usd"}), "c$": frozenset({"cad"}), "ca$": frozenset({"cad"}),
    "a$": frozenset({"aud"}), "au$": frozenset({"aud"}), "nz$": frozenset({"nzd"}),
    "s$": frozenset({"sgd"}), "hk$": frozenset({"hkd"}), "mx$": frozenset({"mxn"}),
    "nt$": frozenset({"twd"}), "r$": frozenset({"brl"}),
    "€": frozenset({"eur"}), "£": frozenset({"gbp"}), "e£": frozenset({"egp"}),
    "¥": frozenset({"jpy", "cny"}), "￥": frozenset({"jpy", "cny"}), "jp¥": frozenset({"jpy"}),
    "cn¥": frozenset({"cny"}), "rmb": frozenset({"cny"}), "元": frozenset({"cny"}), "円": frozenset({"jpy"}),
    "₩": frozenset({"krw"}), "₹": frozenset({"inr"}), "rs": frozenset({"inr"}), "rs.": frozenset({"inr"}),
    "₪": frozenset({"ils"}), "₺": frozenset({"try"}), "₴": frozenset({"uah"}), "₱": frozenset({"php"}),
    "฿": frozenset({"thb"}), "₫": frozenset({"vnd"}), "₦": frozenset({"ngn"}), "ksh": frozenset({"kes"}),
    "zł": frozenset({"pln"}), "kč": frozenset({"czk"}), "ft": frozenset({"huf"}), "lei": frozenset({"ron"}),
    "лв": frozenset({"bgn"}), "лв.": frozenset({"bgn"}), "rp": frozenset({"idr"}), "rm": frozenset({"myr"}),
    "r": frozenset({"zar"}), "s/": frozenset({"pen"}), "fr.": frozenset({"chf"}), "sfr.": frozenset({"chf"}),
    "kr": frozenset({"sek", "nok", "dkk", "isk"}), "kr.": frozenset({"dkk", "isk"}),
    "bd": frozenset({"bhd"}), "kd": frozenset({"kwd"}), "jd": frozenset({"jod"}), "ro": frozenset({"omr"}),
    "dt": frozenset({"tnd"}), "aed": frozenset({"aed"}), "sar": frozenset({"sar"}),
}

_GROUP_ONLY = " \u00a0\u202f\u2009'\u2019"  # spaces (plain, no-break, narrow, thin) and apostrophes
_SEPARATORS = _GROUP_ONLY + ".,"
_SHAPE = re.compile(
    r"^(?P<sign>[+\-\u2212]?)\s*(?P<before>[^\d+\-\u2212]*?)\s*(?P<sign2>[+\-\u2212]?)\s*"
    r"(?P<number>[0-9](?:[0-9" + re.escape(_SEPARATORS) + r"]*[0-9])?)\s*(?P<after>[^\d]*?)\s*$"
)


class MoneyError(ValueError):
    """A sentence saying what is wrong with an amount or a currency."""


def check_currency(currency: str) -> str:
    code = currency.strip().lower()
    if code not in CURRENCIES:
        shown = currency if len(currency) <= 20 else currency[:20] + "…"
        raise MoneyError(f"{shown!r} is not a currency we can bill in (use an ISO code such as usd).")
    return code


def exponent(currency: str) -> int:
    code = check_currency(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def decimal_marks(currency: str, locale: str | None = None) -> frozenset[str]:
    """The marks (`.`, `,`) that may write decimals on a form in this currency and locale.

    One mark settles what a lone `.`/`,` means; two leave it open. A locale we do not know settles
    nothing: guessing from the currency could contradict what the form's writer meant.
    """
    if locale is not None and locale.strip():
        mark = locale_decimal_mark(locale)
        return frozenset({mark}) if mark else frozenset({".", ","})
    code = currency.strip().lower()
    if code in _EITHER_DECIMAL_CURRENCIES or code in THREE_DECIMAL:
        # With three decimals, "1.234" is 1.234 dinars written one way and 1,234 the other, and
        # both are valid amounts: only the form's locale can tell them apart.
        return frozenset({".", ","})
    return frozenset({","}) if code in _COMMA_DECIMAL_CURRENCIES else frozenset({"."})


def locale_decimal_mark(locale: str) -> str | None:
    """`de-DE` → ",", `en_IE` → ".", `de-CH` → "."; None for a locale we do not know."""
    language, region = split_locale(locale)
    if region in _REGION_DECIMAL:
        return _REGION_DECIMAL[region]
    if language in _COMMA_DECIMAL_LANGUAGES:
        return ","
    if language in _DOT_DECIMAL_LANGUAGES:
        return "."
    return None


def split_locale(locale: str) -> tuple[str, str]:
    """`en-GB` / `en_GB` / `en-Latn-GB` → ("en", "gb"); the region is "" when absent."""
    parts = [p for p in re.split(r"[-_.@]", locale.strip().lower()) if p]
    language = parts[0] if parts else ""
    region = next((p for p in parts[1:] if len(p) == 2 and p.isalpha()), "")
    return language, region


def parse_amount(text: str | int | Decimal, currency: str, *, locale: str | None = None) -> int:
    """`"96,000.00"`, `"$96000"`, `"120.000,00"` (EUR), `Decimal("96000")` → minor units.

    Refuses more decimals than the currency has rather than rounding money silently, a sign or
    code that names another currency, and any text whose separators can be read two ways.
    `locale` (e.g. "de-DE", "en-IE") is the form's locale where known; it settles a lone `.`/`,`.
    """
    code = check_currency(currency)
    digits = exponent(code)
    if isinstance(text, bool):  # bool is an int to Python, never an amount
        raise MoneyError(f"{text!r} is not an amount (write it like \"96000.00\").")
    if isinstance(text, int):
        value = Decimal(text)
    elif isinstance(text, Decimal):
        if not text.is_finite():
            raise MoneyError(f"{text} is not an amount (write it like \"96000.00\").")
        value = text
    elif isinstance(text, str):
        value = _read_text(text, code, digits, locale)
    else:
        raise MoneyError(f"{text!r} is not an amount: send money as a decimal string, e.g. \"96000.00\".")
    if value.copy_abs() > MAX_MAJOR_UNITS:
        raise MoneyError(
            f"{_shown(text)} is more than {MAX_MAJOR_UNITS:,} {code.upper()}, more than any contract; "
            f"check the amount."
        )
    minor = value.scaleb(digits)
    if minor != minor.to_integral_value():
        raise MoneyError(
            f"{_shown(text)} has more than {digits} decimal places, which {code.upper()} does not have."
        )
    return int(minor)


def _read_text(text: str, code: str, digits: int, locale: str | None) -> Decimal:
    if len(text) > MAX_AMOUNT_TEXT:
        raise MoneyError(f"{_shown(text)} is too long to be an amount (write it like \"96000.00\").")
    match = _SHAPE.match(text.strip())
    if not match or (match.group("sign") and match.group("sign2")):
        raise MoneyError(f"{_shown(text)} is not an amount (write it like \"96000.00\").")
    for marker in (match.group("before"), match.group("after")):
        _check_marker(marker, text, code)
    negative = (match.group("sign") or match.group("sign2")) in ("-", "\u2212")
    number = _read_number(match.group("number"), text, code, digits, locale)
    return -number if negative else number


def _check_marker(marker: str, text: str, code: str) -> None:
    """A sign or ISO code written beside the number must name the plan's currency."""
    cleaned = marker.strip().lower()
    if not cleaned:
        return
    # "€ EUR", "US$ USD": a sign and a code together; each must agree.
    for part in cleaned.split():
        if part in CURRENCIES:
            if part != code:
                raise MoneyError(
                    f"{_shown(text)} is written in {part.upper()} but the plan's currency is {code.upper()}; "
                    f"correct the amount or the currency."
                )
            continue
        meant = _SIGNS.get(part)
        if meant is None:
            raise MoneyError(f"{_shown(text)} is not an amount (write it like \"96000.00\").")
        if code not in meant:
            raise MoneyError(
                f"{_shown(text)} is written with {part!r}, which is not {code.upper()}, the plan's currency; "
                f"correct the amount or the currency."
            )


def _read_number(number: str, text: str, code: str, digits: int, locale: str | None) -> Decimal:
    runs = re.split("[" + re.escape(_SEPARATORS) + "]", number)
    seps = [c for c in number if c in _SEPARATORS]
    if any(run == "" for run in runs):
        raise MoneyError(f"{_shown(text)} has two separators in a row; write it like \"96000.00\".")
    marks = [c for c in seps if c in ".,"]
    decimal_mark: str | None = None
    if marks:
        last = seps[-1]
        kinds = set(marks)
        if len(kinds) == 2:
            # Both marks: the last one, written once, is the decimal mark (1.234,56 / 1,234.56).
            if last not in ".," or marks.count(last) != 1:
                raise MoneyError(_unreadable(text))
            decimal_mark = last
        else:
            (mark,) = kinds
            if marks.count(mark) > 1:
                decimal_mark = None  # 1.234.567 / 1,234,567: repeated, so grouping
            elif last != mark:
                raise MoneyError(_unreadable(text))  # 1,234 567: a group after the decimals
            else:
                decimal_mark = _lone_mark_role(mark, runs, seps, text, code, digits, locale)
    if decimal_mark is not None:
        integer_runs, fraction = runs[:-1], runs[-1]
        group_seps = seps[:-1]
    else:
        integer_runs, fraction = runs, ""
        group_seps = seps
    if group_seps:
        if len(set(group_seps)) != 1 and not set(group_seps) <= set(" \u00a0\u202f\u2009"):
            raise MoneyError(_unreadable(text))
        if decimal_mark is not None and decimal_mark in group_seps:
            raise MoneyError(_unreadable(text))
        if not _grouped_correctly(integer_runs, code):
            raise MoneyError(
                f"{_shown(text)} is not grouped in thousands (like 1,234,567.00 or 1.234.567,00); "
                f"check the amount."
            )
    if decimal_mark is not None and len(fraction) == 3 and digits < 3:
        # Three digits after the only mark is how thousands are grouped elsewhere: never decimals
        # for a currency with fewer, even when they are zeros ("€120.000" is not €120.00).
        raise MoneyError(
            f"{_shown(text)} has three decimal places, which {code.upper()} does not have (three digits after "
            f"a mark is how thousands are grouped elsewhere); check the amount."
        )
    try:
        return Decimal("".join(integer_runs) + ("." + fraction if fraction else ""))
    except InvalidOperation:  # pragma: no cover - the pattern only lets digits through
        raise MoneyError(_unreadable(text)) from None


def _lone_mark_role(mark: str, runs: list[str], seps: list[str], text: str, code: str, digits: int,
                    locale: str | None) -> str | None:
    """One `.` or `,`, the last separator: the decimal mark (returned) or a thousands group (None)."""
    head, tail = runs[-2], runs[-1]
    if len(tail) != 3:
        return mark  # a thousands group has exactly three digits, so these are decimals
    if len(seps) > 1 or len(head) > 3 or (head.startswith("0")):
        # Other groups are already marked by spaces or apostrophes, or the digits before could not
        # open a group (1234,567 / 0,500): the mark writes decimals.
        return mark
    conventions = decimal_marks(code, locale)
    if conventions == {mark}:
        if digits >= 3:
            return mark
        raise MoneyError(_ambiguous(text, mark, runs, code))
    if mark not in conventions:
        return None
    raise MoneyError(_ambiguous(text, mark, runs, code))


def _grouped_correctly(runs: list[str], code: str) -> bool:
    first, rest = runs[0], runs[1:]
    thousands = 1 <= len(first) <= 3 and not first.startswith("0") and all(len(run) == 3 for run in rest)
    return thousands or (code == "inr" and _indian_grouping(runs))


def _indian_grouping(runs: list[str]) -> bool:
    # Indian grouping: the last three digits, then pairs (12,34,567.00).
    first, middle, last = runs[0], runs[1:-1], runs[-1]
    return (len(last) == 3 and all(len(r) == 2 for r in middle) and 1 <= len(first) <= 2
            and not first.startswith("0"))


def _ambiguous(text: str, mark: str, runs: list[str], code: str) -> str:
    whole = "".join(runs)
    example = whole + ("." + "0" * exponent(code) if exponent(code) else "")
    return (
        f"{_shown(text)} could mean {whole} or {runs[0]}.{runs[-1]} {code.upper()}: the {mark!r} may group "
        f"thousands or mark decimals. Write it without grouping, like \"{example}\", or set the form's locale."
    )


def _unreadable(text: str) -> str:
    return f"{_shown(text)} mixes its separators in a way no number is written; write it like \"96000.00\"."


def _shown(text: object) -> str:
    return repr(text) if isinstance(text, str) else str(text)


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def format_amount(minor: int, currency: str) -> str:
    """Minor units → the decimal string the API uses, e.g. 9600000 usd → "96000.00"."""
    digits = exponent(currency)
    return f"{to_decimal(minor, currency):.{digits}f}"


def display(minor: int, currency: str) -> str:
    """For people: "96,000.00 USD"."""
    digits = exponent(currency)
    return f"{to_decimal(minor, currency):,.{digits}f} {currency.upper()}"


def split_remainder_first(total: int, parts: int) -> list[int]:
    """Split `total` into `parts` whole amounts that add up to it exactly.

    Every part is `total // parts`; the remainder goes on the first part, as the runbook's first
    installment invoice carries it (SPEC §6). Parts differ by at most the remainder.
    """
    if parts <= 0:
        raise ValueError("parts must be positive")
    if total < 0:
        raise ValueError("total must not be negative")
    base, remainder = divmod(total, parts)
    return [base + remainder] + [base] * (parts - 1)


def apply_percent_off(minor: int, percent: Decimal) -> int:
    """`minor × (1 − percent/100)`, rounded half up to a whole minor unit."""
    value = Decimal(minor) * (Decimal(100) - percent) / Decimal(100)
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))
