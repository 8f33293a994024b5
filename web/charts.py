"""What the revenue page's charts show: series, axis titles and colours, from the reports' figures.

The page draws them with Chart.js (vendored under web/static/vendor/chart.js); this module decides
what goes in them so web/static/revenue.js stays a generic renderer. Values stay the reports'
decimal strings: the browser parses them only to place bars, and tooltips show the strings as-is.
"""

from __future__ import annotations

from typing import Any

# Colour-blind-safe (Okabe–Ito) hues; money up is green/blue, money lost orange/red.
COLOURS = {"mrr": "#0072b2", "new": "#009e73", "reactivation": "#56b4e9", "expansion": "#7fc97f",
           "contraction": "#e69f00", "churned": "#d55e00", "recurring": "#0072b2", "one_off": "#cc79a7",
           "committed": "#0072b2", "net": "#0072b2", "gross": "#999999"}


def _negate(value: str) -> str:
    """A loss drawn below zero: "12.50" → "-12.50" (the reports give movements as positive sizes)."""
    if value.startswith("-"):
        return value[1:]
    return value if value.strip("0.") == "" else f"-{value}"


def _series(key: str, label: str, values: list[str], **extra: Any) -> dict[str, Any]:
    return {"key": key, "label": label, "values": values, "colour": COLOURS[key], **extra}


def page_data(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The four charts of the revenue page, each a dict revenue.js turns into a Chart.js config."""
    currency = data["summary"]["currency"].upper()
    points = data["mrr"]["points"]
    months = data["bridge"]["months"]
    one_off = data["one_off"]["months"]
    ahead = data["committed"]["months"]
    return [
        {"id": "chart-mrr", "title": "MRR at the end of each month", "type": "line",
         "x_title": "Month", "y_title": f"MRR ({currency})", "labels": [p["month"][:7] for p in points],
         "series": [_series("mrr", "MRR", [p["mrr"] for p in points])], "csv": "mrr"},
        {"id": "chart-bridge", "title": "MRR bridge: what moved MRR each month", "type": "bar", "stacked": True,
         "x_title": "Month", "y_title": f"MRR movement ({currency})", "labels": [m["month"][:7] for m in months],
         "series": [_series("new", "New", [m["new"] for m in months]),
                    _series("reactivation", "Reactivation", [m["reactivation"] for m in months]),
                    _series("expansion", "Expansion", [m["expansion"] for m in months]),
                    _series("contraction", "Contraction", [_negate(m["contraction"]) for m in months]),
                    _series("churned", "Churn", [_negate(m["churned"]) for m in months])],
         "csv": "bridge"},
        {"id": "chart-one-off", "title": "Recurring and one-off revenue recognised per month", "type": "bar",
         "stacked": True, "x_title": "Month", "y_title": f"Net revenue ({currency})",
         "labels": [m["month"][:7] for m in one_off],
         "series": [_series("recurring", "Recurring", [m["recurring_net"] for m in one_off]),
                    _series("one_off", "One-off", [m["one_off_net"] for m in one_off])], "csv": "one_off"},
        {"id": "chart-committed", "title": "Committed MRR for the next 12 months", "type": "line",
         "x_title": "Month end", "y_title": f"Committed MRR ({currency})", "labels": [m["on"] for m in ahead],
         "series": [_series("committed", "Committed MRR", [m["mrr"] for m in ahead])], "csv": "committed"},
    ]
