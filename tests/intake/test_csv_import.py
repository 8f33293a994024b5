"""Acceptance 3 of issue 7: `revops import-csv` of an exported Zapier Annual Plan Table."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

from sqlalchemy import func, select

from store.db import unit_of_work
from store.models import AuditEntry, Plan
from store.plans import plan_to_json

COLUMNS = ["PandaDoc Order Form", "Company Name", "Customer Email", "Credit Amount", "Discount", "Price",
           "Start Date", "Term", "PostHog Org ID", "Stripe ID - existing", "Payment Schedule", "Products",
           "Invoice ID"]


def _write(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def _row(i: int) -> list[str]:
    monthly = i % 4 == 0
    return [f"pd{i:05d}AbCdEfGhIjKlMn", f"Company {i}", f"billing{i}@example.com", "$120,000.00", "20%",
            "$96,000.00", "12/01/2026", "1 year" if i % 2 else "24", f"org-{i}",
            f"cus_Existing{i}" if monthly else "", "monthly" if monthly else "upfront",
            "product_analytics, session_replay" if i % 3 == 0 else "", ""]


def _cli(revops_cli: list[str], database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([*revops_cli, *args], env=env, capture_output=True, text=True, timeout=120)


def _count(database_url: str) -> tuple[int, object, int]:
    with unit_of_work(database_url) as session:
        return (session.scalar(select(func.count(Plan.id))) or 0, session.scalar(select(func.max(Plan.updated_at))),
                session.scalar(select(func.count(AuditEntry.id))) or 0)


def test_a_thousand_rows_import_and_a_second_import_changes_nothing(
        tmp_path: Path, database_url: str, revops_cli: list[str]) -> None:
    path = _write(tmp_path / "annual-plan-table.csv", [_row(i) for i in range(1000)])

    first = _cli(revops_cli, database_url, "import-csv", str(path))
    assert first.returncode == 0, first.stderr
    assert f"{path}: 1000 imported, 0 unchanged, 0 invalid." in first.stdout
    assert "columns not imported: Invoice ID" in first.stdout
    count, last_change, audit = _count(database_url)
    assert count == 1000 and audit == 1000

    with unit_of_work(database_url) as session:
        row = plan_to_json(session.scalar(select(Plan).where(Plan.pandadoc_id == "pd00012AbCdEfGhIjKlMn")))
    assert {k: row[k] for k in ("company_name", "customer_email", "credit_amount", "discount", "price",
                                "start_date", "term_months", "posthog_org_id", "payment_schedule",
                                "stripe_customer_id_existing", "products", "state", "source")} == {
        "company_name": "Company 12", "customer_email": "billing12@example.com", "credit_amount": "120000.00",
        "discount": "20", "price": "96000.00", "start_date": "2026-12-01", "term_months": 24,
        "posthog_org_id": "org-12", "payment_schedule": "monthly", "stripe_customer_id_existing": "cus_Existing12",
        "products": ["product_analytics", "session_replay"], "state": "new", "source": "csv"}

    second = _cli(revops_cli, database_url, "import-csv", str(path))
    assert second.returncode == 0, second.stderr
    assert f"{path}: 0 imported, 1000 unchanged, 0 invalid." in second.stdout
    assert _count(database_url) == (count, last_change, audit)


def test_a_file_with_bad_lines_reports_each_one(tmp_path: Path, database_url: str, revops_cli: list[str]) -> None:
    good = _row(1)
    rows = [
        good,                                                                   # line 2
        ["pdBadEmail0000000000", "Bad Email Co", "not-an-email", *good[3:]],     # line 3
        ["", *good[1:]],                                                        # line 4
        [good[0], *good[1:]],                                                   # line 5: duplicate of line 2
        ["pdTermless0000000000", "Termless", "a@b.example", "100", "0", "100", "2026-12-01", "forever",
         "", "", "upfront", "", ""],                                            # line 6
        ["pdDiscount0000000000", "Too Kind", "a@b.example", "100", "150", "100", "2026-12-01", "12", "", "",
         "upfront", "", ""],                                                    # line 7
        ["pdMismatch0000000000", "Odd Price", "a@b.example", "100", "0", "80", "2026-12-01", "12", "", "",
         "upfront", "", ""],                                                    # line 8: warning only
        ["pdUnknownProduct0000", "Shop", "a@b.example", "100", "0", "100", "2026-12-01", "12", "", "",
         "upfront", "product_analytics, teleportation", ""],                     # line 9
    ]
    path = _write(tmp_path / "bad.csv", rows)
    result = _cli(revops_cli, database_url, "import-csv", str(path))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: 2 imported, 0 unchanged, 6 invalid."
    assert "  line 3: not imported: Customer Email: 'not-an-email' is not an email address." in lines
    assert any(line.startswith("  line 4: not imported: \"PandaDoc Order Form\" is empty") for line in lines)
    assert "  line 5: not imported: PandaDoc Order Form 'pd00001AbCdEfGhIjKlMn' is also on line 2; " \
           "keep one of the two lines." in lines
    assert any(line.startswith("  line 6: not imported: Term: 'forever' is not a term") for line in lines)
    assert any(line.startswith("  line 7: not imported: Discount: A discount of 150%") for line in lines)
    assert any(line.startswith("  line 8: imported for review: Price 80.00 is not credit") for line in lines)
    assert any(line.startswith("  line 9: not imported: Products: Unknown product 'teleportation'")
               for line in lines)
    with unit_of_work(database_url) as session:
        states = dict(session.execute(select(Plan.pandadoc_id, Plan.state)).all())
    assert states == {"pd00001AbCdEfGhIjKlMn": "new", "pdMismatch0000000000": "needs_review"}


def test_a_file_without_the_table_columns_is_refused(tmp_path: Path, database_url: str,
                                                     revops_cli: list[str]) -> None:
    path = tmp_path / "other.csv"
    path.write_text("name,email\nA,a@b.example\n")
    result = _cli(revops_cli, database_url, "import-csv", str(path))
    assert result.returncode == 2
    assert "lacks the column(s) 'PandaDoc Order Form'" in result.stderr


def test_lines_go_through_the_plan_service_like_rows_typed_by_hand(tmp_path: Path, database_url: str,
                                                                   revops_cli: list[str]) -> None:
    """One door: a row the API made is "unchanged" for the import, and the service's storage
    checks (an amount beyond the database column) refuse a line rather than fail the file."""
    from plans.service import PlanService
    from tests.fixtures.app import make_settings

    service = PlanService.for_settings(make_settings(database_url))
    made = service.create({"company_name": "By hand", "customer_email": "hand@example.com",
                           "credit_amount": "100", "price": "100", "start_date": "2026-12-01", "term_months": 12,
                           "pandadoc_id": "pdByHand000000000000"}, actor="operator@example.com")
    rows = [
        ["pdByHand000000000000", "By hand (CSV copy)", "hand@example.com", "100", "0", "100", "2026-12-01", "12",
         "", "", "upfront", "", ""],                                            # line 2: the API's row
        ["pdHuge00000000000000", "Huge", "a@b.example", "9" * 25, "0", "9" * 25, "2026-12-01", "12", "", "",
         "upfront", "", ""],                                                    # line 3: beyond BIGINT
    ]
    result = _cli(revops_cli, database_url, "import-csv", str(_write(tmp_path / "mixed.csv", rows)))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(": 0 imported, 1 unchanged, 1 invalid.")
    assert any(line.startswith("  line 3: not imported: Credit Amount: ") and "Price: " in line for line in lines)
    with unit_of_work(database_url) as session:
        assert session.scalar(select(func.count(Plan.id))) == 1
        assert session.get(Plan, made["id"]).company_name == "By hand"


def test_the_file_is_read_as_en_us_unless_told_otherwise(tmp_path: Path, database_url: str,
                                                          revops_cli: list[str]) -> None:
    """Issue 17: a CSV carries no locale, so the import says which one (the Zapier table's, en-US)
    and a file from elsewhere is read with `--locale`; 12/01/2026 is never a guess."""
    us = _write(tmp_path / "us.csv", [["pdUsLocale0001", "US Co", "ap@us.example", "120,000.00", "20", "96,000.00",
                                       "12/01/2026", "12", "org-us", "", "upfront", "", ""]])
    de = _write(tmp_path / "de.csv", [["pdDeLocale0001", "DE Co", "ap@de.example", "120.000,00", "20", "96.000,00",
                                       "01/12/2026", "12", "org-de", "", "upfront", "", ""]])
    assert _cli(revops_cli, database_url, "import-csv", str(us)).returncode == 0
    german = _cli(revops_cli, database_url, "import-csv", "--locale", "de-DE", str(de))
    assert german.returncode == 0, german.stdout + german.stderr
    with unit_of_work(database_url) as session:
        rows = {p.pandadoc_id: plan_to_json(p) for p in session.scalars(select(Plan))}
    for document in ("pdUsLocale0001", "pdDeLocale0001"):
        row = rows[document]
        assert (row["state"], row["start_date"], row["price"], row["credit_amount"]) == (
            "new", "2026-12-01", "96000.00", "120000.00"), row
