"""Chart geometry for the server-drawn SVG charts of the revenue page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    title: str
    kind: str


def bars(values: list[tuple[str, list[tuple[str, int]]]], money: Callable[[int], str], *, width: int = 720,
         height: int = 220) -> dict[str, Any]:
    """Geometry of a bar chart: per label, stacked parts (kind, value); negatives go below zero."""
    top = max([sum(v for _, v in parts if v > 0) for _, parts in values] + [1])
    bottom = min([sum(v for _, v in parts if v < 0) for _, parts in values] + [0])
    span = top - bottom or 1
    zero = height * top / span
    slot = width / max(len(values), 1)
    out: list[Bar] = []
    for i, (label, parts) in enumerate(values):
        up = down = 0.0
        for kind, value in parts:
            h = height * abs(value) / span
            if value >= 0:
                y = zero - up - h
                up += h
            else:
                y = zero + down
                down += h
            out.append(Bar(round(i * slot + slot * 0.15, 1), round(y, 1), round(slot * 0.7, 1), round(h, 1),
                           label, f"{label} {kind}: {money(value)}", kind))
    return {"bars": out, "width": width, "height": height, "zero": round(zero, 1), "slot": slot,
            "labels": [(round(i * slot + slot / 2, 1), label) for i, (label, _) in enumerate(values)]}


def revenue_charts(points: list[dict[str, Any]], deferred: list[dict[str, Any]],
                   money: Callable[[int], str]) -> dict[str, Any]:
    """The revenue page's three charts from the MRR points (movements in minor units) and the
    recognised revenue by month."""
    short = [(p["month"][:7], p) for p in points]
    return {
        "mrr": bars([(m, [("MRR", p["mrr_minor"])]) for m, p in short], money),  # end of each month
        "movements": bars([(m, [("new", p["new"]), ("expansion", p["expansion"]),
                                ("contraction", -p["contraction"]), ("churned", -p["churned"])]) for m, p in short],
                          money),
        "deferred": bars([(p["month"][:7], [("net", p["net_minor"])]) for p in deferred], money),
    }
