"""Import an exported Zapier Annual Plan Table (CSV with the seed's column names) into plan rows.

Idempotent on the PandaDoc id: a line whose document already has a row is left alone ("unchanged"),
so importing the same file twice changes nothing. Every line goes through `plans.service`, the
door rows typed by hand use, in one transaction for the file: a line with errors is not imported
and is reported with its line number and reasons, so the file can be fixed and imported again. A
line that only trips the price check is imported in "needs review" with the warning, as a person
must confirm it.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from domain.annual_plan_table import IMPORT_COLUMNS

if TYPE_CHECKING:
    from plans.service import PlanService

# The Zapier table is kept by a US team: its amounts are 96,000.00 and its dates 12/01/2026 for
# 1 December. A file from elsewhere says so with `--locale`.
DEFAULT_LOCALE = "en-US"

REQUIRED_COLUMNS = ("PandaDoc Order Form", "Company Name", "Customer Email", "Credit Amount", "Price",
                    "Start Date", "Term")


class CsvImportError(ValueError):
    """The file as a whole cannot be imported (unreadable, or required columns missing)."""


@dataclass
class ImportReport:
    imported: int = 0
    unchanged: int = 0
    needs_review: list[tuple[int, str]] = field(default_factory=list)  # imported, awaiting a person
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line number, reasons)
    ignored_columns: list[str] = field(default_factory=list)


def import_csv(plans: PlanService, path: str | Path, *, actor: str = "csv-import",
               known_products: Collection[str] | None | EllipsisType = ..., locale: str = DEFAULT_LOCALE,
               ) -> ImportReport:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return import_lines(plans, handle, actor=actor, known_products=known_products, locale=locale)
    except (OSError, UnicodeDecodeError) as exc:
        raise CsvImportError(f"Cannot read {path}: {exc}") from None


def import_lines(plans: PlanService, lines: Iterable[str], *, actor: str = "csv-import",
                 known_products: Collection[str] | None | EllipsisType = ..., locale: str = DEFAULT_LOCALE,
                 ) -> ImportReport:
    """Products are checked against the billing config (`...`), the keys given, or not at all (None).
    `locale` says how the file writes amounts and dates ("en-US": 96,000.00 and 12/01/2026)."""
    from domain.plan_input import LOCALE_KEY
    from plans.service import DocumentTaken, Keep, PlanRejected

    reader = csv.DictReader(lines)
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise CsvImportError(
            f"The file lacks the column(s) {', '.join(repr(m) for m in missing)}; export the Annual Plan Table "
            f"with its original column names.")
    report = ImportReport(ignored_columns=[name for name in header if name and name not in IMPORT_COLUMNS])
    first_line: dict[str, int] = {}
    with plans.batch(known_products) as rows:
        for raw in reader:
            line_number = reader.line_num
            values = {k.strip(): v for k, v in raw.items() if k is not None}
            if not any((v or "").strip() for v in values.values() if isinstance(v, str)):
                continue  # blank line
            data: dict[str, Any] = {field_name: (values.get(column) or "").strip()
                                    for column, field_name in IMPORT_COLUMNS.items() if column in values}
            data = {k: v for k, v in data.items() if v != "" or k in ("pandadoc_id",)}
            document_id = data.get("pandadoc_id", "")
            if not document_id:
                report.invalid.append((line_number, "\"PandaDoc Order Form\" is empty; the import matches rows "
                                                    "on it, so fill it in (or add this row by hand)."))
                continue
            if document_id in first_line:
                report.invalid.append((line_number, f"PandaDoc Order Form {document_id!r} is also on line "
                                                    f"{first_line[document_id]}; keep one of the two lines."))
                continue
            first_line[document_id] = line_number
            if locale:
                data[LOCALE_KEY] = locale
            try:
                plan = rows.create(data, actor=actor, source="csv", keep=Keep.WARNINGS)
            except DocumentTaken:
                report.unchanged += 1
                continue
            except PlanRejected as refused:
                reasons = "; ".join(f"{_column(name)}: {message}" for name, message in refused.errors.items())
                report.invalid.append((line_number, reasons or refused.message))
                continue
            report.imported += 1
            if plan.warnings:
                report.needs_review.append((line_number, "; ".join(str(w) for w in plan.warnings.values())))
    return report


def _column(field_name: str) -> str:
    for column, name in IMPORT_COLUMNS.items():
        if name == field_name:
            return column
    return field_name
