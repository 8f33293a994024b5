"""PandaDoc → plan rows: reading webhook deliveries and mapping document details to plan fields.

Where each plan field is found in a document is configuration (`config/pandadoc_field_map.toml`,
setting `PANDADOC_FIELD_MAP`), because sales edits the order-form template, not the code. The
mapping only picks text out of the details; `domain.plan_input` validates it like any other row.

The mapping never decides money: it hands over the text as written (a JSON number as its exact
decimal text), the form's locale if the document names one, and every pricing line other than
the credit line, so validation can refuse or flag what it cannot read for certain.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from domain.plan_input import INPUT_FIELDS, INTAKE_FAILURE_KEY, LOCALE_KEY, OTHER_LINES_KEY

COMPLETED_EVENT = "document_state_changed"
COMPLETED_STATUS = "document.completed"
SOURCE_KINDS = ("token", "field", "metadata", "recipient", "pricing", "grand_total")
_CHECKED = {"true", "yes", "y", "x", "1", "checked", "on"}


class FieldMapError(ValueError):
    """The field map file is unreadable or names something that does not exist."""


class MalformedDelivery(ValueError):
    """A webhook body that is not a JSON array of {event, data} objects."""


@dataclass(frozen=True)
class DocumentEvent:
    event: str
    document_id: str
    status: str

    @property
    def is_completion(self) -> bool:
        return self.event == COMPLETED_EVENT and self.status == COMPLETED_STATUS


@dataclass(frozen=True)
class FieldMap:
    """Plan field → sources tried in order (first non-blank wins); product key → checkbox source."""

    fields: dict[str, tuple[str, ...]]
    products: dict[str, str] = field(default_factory=dict)
    pricing_item_sku: str | None = None
    # The credit line among several pricing lines: by SKU, else by a word in its name.
    pricing_item_name: str | None = None
    # Where the form says its locale ("de-DE"), which settles "1.234" and "01/12/2026".
    locale_sources: tuple[str, ...] = ()
    default_locale: str | None = None


def read_delivery(payload: Any) -> list[DocumentEvent]:
    """The events of a parsed webhook body; raises `MalformedDelivery` with the reason."""
    if not isinstance(payload, list) or not payload:
        raise MalformedDelivery("The body must be a non-empty JSON array of {event, data} objects.")
    events = []
    for index, item in enumerate(payload):
        if not isinstance(item, dict) or not isinstance(item.get("event"), str) or not isinstance(
            item.get("data"), dict
        ):
            raise MalformedDelivery(f"Item {index} is not an object with a string \"event\" and an object \"data\".")
        data = item["data"]
        events.append(DocumentEvent(event=item["event"], document_id=str(data.get("id") or ""),
                                    status=str(data.get("status") or "")))
    for index, event in enumerate(events):
        if event.is_completion and not event.document_id:
            raise MalformedDelivery(f"Item {index} completes a document but its data has no \"id\".")
    return events


def parse_field_map(data: Mapping[str, Any], origin: str = "field map") -> FieldMap:
    raw_fields = data.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        raise FieldMapError(f"The {origin} has no [fields] table mapping plan fields to PandaDoc sources.")
    fields: dict[str, tuple[str, ...]] = {}
    for name, sources in raw_fields.items():
        if name not in INPUT_FIELDS or name in ("pandadoc_id", "products"):
            raise FieldMapError(f"The {origin} maps {name!r}, which is not a plan field it can set.")
        listed = (sources,) if isinstance(sources, str) else tuple(sources)
        for source in listed:
            _check_source(source, origin)
        fields[name] = listed
    products = {str(k): str(v) for k, v in (data.get("products") or {}).items()}
    for source in products.values():
        _check_source(source, origin)
    pricing = data.get("pricing") or {}
    sku, name = pricing.get("item_sku"), pricing.get("item_name")
    form = data.get("form") or {}
    locale_sources = form.get("locale") or ()
    locale_sources = (locale_sources,) if isinstance(locale_sources, str) else tuple(locale_sources)
    for source in locale_sources:
        _check_source(source, origin)
    default_locale = form.get("default_locale")
    return FieldMap(fields=fields, products=products, pricing_item_sku=str(sku) if sku else None,
                    pricing_item_name=str(name).lower() if name else None, locale_sources=locale_sources,
                    default_locale=str(default_locale) if default_locale else None)


@lru_cache(maxsize=4)
def load_field_map(path: str) -> FieldMap:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FieldMapError(f"PandaDoc field map {path} cannot be read: {exc}") from None
    return parse_field_map(data, origin=f"PandaDoc field map {path}")


def map_details(details: Mapping[str, Any], field_map: FieldMap) -> dict[str, Any]:
    """Plan input (loose text, as a person would type it) from a document's details.

    Beside the plan fields: `_locale` when the form names its locale, `_other_lines` when the
    pricing has lines other than the credit line (never added into the price), and
    `_intake_failure` for the stand-in details of a document that could not be read.
    """
    data: dict[str, Any] = {"pandadoc_id": str(details.get("id") or "")}
    if INTAKE_FAILURE_KEY in details:
        data[INTAKE_FAILURE_KEY] = str(details[INTAKE_FAILURE_KEY])
        return data
    for name, sources in field_map.fields.items():
        for source in sources:
            value = lookup(details, source, field_map)
            if not _blank(value):
                data[name] = _as_text(value)
                break
    if field_map.products:
        data["products"] = sorted(key for key, source in field_map.products.items()
                                  if _checked(lookup(details, source, field_map)))
    locale = next((value for value in (lookup(details, s, field_map) for s in field_map.locale_sources)
                   if isinstance(value, str) and value.strip()), field_map.default_locale)
    if locale:
        data[LOCALE_KEY] = locale.strip()
    items = _pricing_items(details)
    if len(items) > 1:
        credit = _credit_line(items, field_map)
        data[OTHER_LINES_KEY] = [_line_summary(item) for item in items if item is not credit]
    return data


def failed_intake_details(document_id: str, details: Any, error: str) -> dict[str, Any]:
    """Stand-in details for a document whose intake kept failing the same way: a row is still
    made (in needs review, with the error), and the original details are kept on it for a person."""
    original = _json_safe(details)
    return {"id": document_id, INTAKE_FAILURE_KEY: error[:2000], "original_details": original}


def _json_safe(value: Any, depth: int = 0) -> Any:
    """A copy any JSON column stores: NaN and infinities (which Python's JSON reader accepts but
    PostgreSQL refuses) and other odd values become text; absurd nesting is cut off."""
    if depth > 50:
        return "…"
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def lookup(details: Mapping[str, Any], source: str, field_map: FieldMap) -> Any:
    """The value one source names in the details, or None."""
    kind, _, name = source.partition(":")
    if kind == "token":
        return _named(details.get("tokens"), "name", name)
    if kind == "field":
        found = _find(details.get("fields"), "field_id", name)
        if found is None:
            found = _find(details.get("fields"), "name", name)
        return found.get("value") if found is not None else None
    if kind == "metadata":
        metadata = details.get("metadata")
        return metadata.get(name) if isinstance(metadata, dict) else None
    if kind == "recipient":
        recipients = [r for r in details.get("recipients") or [] if isinstance(r, dict)]
        signers = [r for r in recipients if r.get("recipient_type", "signer") == "signer"] or recipients
        return signers[0].get(name) if signers else None
    if kind == "pricing":
        item = _credit_line(_pricing_items(details), field_map)
        return _path(item, name) if item is not None else None
    if kind == "grand_total":
        total = details.get("grand_total")
        if name == "amount" and len(_pricing_items(details)) > 1:
            # The grand total adds every line (credit + platform fee …): it is the credit's price
            # only when the credit is the only line.
            return None
        if isinstance(total, dict):
            return total.get(name)
        return total if name == "amount" else None
    return None


def _pricing_items(details: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    pricing = details.get("pricing")
    tables = pricing.get("tables") if isinstance(pricing, dict) else None
    if not isinstance(tables, list):
        return []
    items: list[Mapping[str, Any]] = []
    for table in tables:
        rows = table.get("items") if isinstance(table, dict) else None
        items.extend(item for item in rows or [] if isinstance(item, dict))
    return items


def _credit_line(items: list[Mapping[str, Any]], field_map: FieldMap) -> Mapping[str, Any] | None:
    """The one pricing line that carries the credit, or None when it cannot be told for certain."""
    sku, name = field_map.pricing_item_sku, field_map.pricing_item_name
    if sku is None and name is None:
        return items[0] if len(items) == 1 else None
    candidates = [item for item in items if sku is not None and item.get("sku") == sku]
    if not candidates and name is not None:
        candidates = [item for item in items if name in str(item.get("name") or "").lower()]
    return candidates[0] if len(candidates) == 1 else None


def _line_summary(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _as_text(item.get(key)) for key in ("name", "sku", "qty", "price", "total")
            if not _blank(item.get(key))}


def _as_text(value: Any) -> Any:
    """Text stays text; a JSON number becomes its exact decimal text (96000.0 → "96000.0"), since
    Python's float repr is the shortest decimal that reads back as the same number, which is what
    the document's JSON said. Infinity and NaN become text validation refuses."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value


def _path(value: Any, dotted: str) -> Any:
    # Custom column names may contain spaces but not dots; "discount.value" walks into objects.
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _named(items: Any, key: str, name: str) -> Any:
    found = _find(items, key, name)
    return found.get("value") if found is not None else None


def _find(items: Any, key: str, name: str) -> dict[str, Any] | None:
    for item in items or []:
        if isinstance(item, dict) and item.get(key) == name:
            return item
    return None


def _check_source(source: Any, origin: str) -> None:
    kind, sep, name = str(source).partition(":")
    if not isinstance(source, str) or not sep or kind not in SOURCE_KINDS or not name:
        raise FieldMapError(
            f"The {origin} has the source {source!r}; write it as KIND:NAME with KIND one of "
            f"{', '.join(SOURCE_KINDS)}."
        )


def _checked(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in _CHECKED


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or isinstance(value, (dict, list))


def completed_document_ids(events: Sequence[DocumentEvent]) -> list[str]:
    """Documents a delivery completes, once each, in order."""
    seen: dict[str, None] = {}
    for event in events:
        if event.is_completion:
            seen.setdefault(event.document_id, None)
    return list(seen)
