"""revenue pre-aggregates: monthly totals and per-customer booking days, kept by every rebuild;
the schedule loses the indexes only the reports used

Revision ID: 0012_revenue_aggregates
Revises: 0011_catalog_audit

Issue 13: the reports read `revenue_month_totals` (per month, day booked, currency and source type:
a few thousand rows whatever the warehouse's size), `revenue_customer_month_totals` (per customer,
month and currency) and `revenue_customer_days` (per customer, day booked and currency) instead of aggregating millions of schedule rows on the first request
after a sync. Every index the schedule kept for those reads made each rebuild slower (eight
indexes on five million rows); it keeps one unique key, (customer, row, month), which is also what
a rebuild deletes by, and partial indexes for the few plan and one-off charge rows. The persons and groups
views read `revenue_customer_days` (a row per customer and booking day) instead of the schedule.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012_revenue_aggregates'
down_revision: str | Sequence[str] | None = '0011_catalog_audit'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROPPED = ("ix_revenue_schedule_month", "ix_revenue_schedule_paid_at", "ix_revenue_schedule_source_id",
           "ix_revenue_schedule_customer_month", "ix_revenue_schedule_month_cover",
           "ix_revenue_schedule_customer_cover", "ix_revenue_schedule_customer_id")
# The views of 0010 read the schedule: dropped while its table is rebuilt (SQLite), then made again.
MOVEMENT_VIEWS = ("revenue_cohorts", "revenue_mrr_movements", "revenue_customer_months", "revenue_deferred_schedule")
VIEWS = (("persons_revenue_analytics", "person_distinct_id", "person_id"),
         ("groups_revenue_analytics", "group_key", "group_key"))


def _per_customer(dialect: str) -> str:
    """Each customer's total per currency, all time and booked in the last 30 days: the days
    summed once, before any join (a row per customer instead of per booking day)."""
    recent = "booked_on >= CURRENT_DATE - 30" if dialect == "postgresql" else "booked_on >= date('now', '-30 days')"
    return f"""(SELECT customer_id, currency, MAX(currency_unit) AS currency_unit, SUM(net) AS net,
        SUM(CASE WHEN {recent} THEN net ELSE 0 END) AS recent
 FROM revenue_customer_days GROUP BY customer_id, currency)"""  # noqa: S608 - fixed names


def _by_currency_sql(view: str, key_column: str, key_alias: str, dialect: str) -> str:
    """A row per person (group) and currency, amounts in that currency (the 0007 shape)."""
    if dialect == "postgresql":
        amount = "CAST(SUM(r.net) AS NUMERIC(24, 3)) / MAX(r.currency_unit)"
        recent_major = "CAST(SUM(r.recent) AS NUMERIC(24, 3)) / MAX(r.currency_unit)"
    else:
        amount = "SUM(r.net) * 1.0 / MAX(r.currency_unit)"
        recent_major = "SUM(r.recent) * 1.0 / MAX(r.currency_unit)"
    return f"""
CREATE VIEW {view} AS
SELECT c.{key_column} AS {key_alias},
       r.currency AS currency,
       {amount} AS amount,
       {recent_major} AS amount_last_30_days,
       SUM(r.net) AS amount_minor,
       SUM(r.recent) AS amount_last_30_days_minor,
       COUNT(DISTINCT c.id) AS customers
FROM {_per_customer(dialect)} r
JOIN stripe_customers c ON c.id = r.customer_id
WHERE c.{key_column} IS NOT NULL
GROUP BY c.{key_column}, r.currency
"""  # noqa: S608 - fixed names


def _converted_sql(name: str, key_column: str, key_alias: str, dialect: str) -> str:
    """A row per person (group) in the reporting currency, each currency at its newest rate (0007)."""
    if dialect == "postgresql":
        major = "CAST({x} AS NUMERIC(30, 12)) / r.currency_unit"
        today = "CURRENT_DATE"
        whole = "CAST(ROUND({x}) AS BIGINT)"
    else:
        major = "{x} * 1.0 / r.currency_unit"
        today = "date('now')"
        whole = "CAST(ROUND({x}) AS INTEGER)"
    rate = "(CASE WHEN r.currency = rep.currency THEN 1 ELSE x.rate END)"
    converted = f"SUM({major.format(x='r.net')} * {rate})"
    converted_recent = f"SUM({major.format(x='r.recent')} * {rate})"
    # The newest rate of each currency, found once (not once per customer row).
    newest = f"""(SELECT x1.currency, x1.reporting_currency, x1.rate FROM exchange_rates x1
  WHERE x1.valid_from = (SELECT MAX(x2.valid_from) FROM exchange_rates x2
                         WHERE x2.currency = x1.currency AND x2.reporting_currency = x1.reporting_currency
                           AND x2.valid_from <= {today}))"""
    return f"""
CREATE VIEW {name} AS
SELECT c.{key_column} AS {key_alias},
       rep.currency AS currency,
       {converted} AS amount,
       {converted_recent} AS amount_last_30_days,
       {whole.format(x=converted + ' * MAX(rep.currency_unit)')} AS amount_minor,
       {whole.format(x=converted_recent + ' * MAX(rep.currency_unit)')} AS amount_last_30_days_minor,
       COUNT(DISTINCT c.id) AS customers
FROM {_per_customer(dialect)} r
JOIN stripe_customers c ON c.id = r.customer_id
CROSS JOIN revenue_reporting rep
LEFT JOIN {newest} x ON x.currency = r.currency AND x.reporting_currency = rep.currency
WHERE c.{key_column} IS NOT NULL AND (r.currency = rep.currency OR x.rate IS NOT NULL)
GROUP BY c.{key_column}, rep.currency
"""  # noqa: S608 - fixed names


def _booked_on(dialect: str) -> str:
    if dialect == "postgresql":
        return "CAST(paid_at AT TIME ZONE 'UTC' AS DATE)"
    return "substr(paid_at, 1, 10)"


def _migration(name: str) -> object:
    """An earlier migration's module, for its view SQL (alembic's versions are not a package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(f"revenue_migration_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _drop_views() -> None:
    for name in MOVEMENT_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name, _, _ in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"DROP VIEW IF EXISTS {name}_by_currency")


def _movement_views(dialect: str) -> None:
    for statement in _migration("0010_revenue_movement_views")._sql(dialect):  # type: ignore[attr-defined]
        op.execute(statement)


def upgrade() -> None:
    op.create_table('revenue_month_totals',
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('booked_on', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('source_type', sa.String(length=16), nullable=False),
    sa.Column('gross', sa.BigInteger(), nullable=False),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('month', 'booked_on', 'currency', 'source_type', name='pk_revenue_month_totals')
    )
    op.create_table('revenue_customer_days',
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('booked_on', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('currency_unit', sa.Integer(), nullable=False),
    sa.Column('gross', sa.BigInteger(), nullable=False),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', 'booked_on', 'currency', name='pk_revenue_customer_days'),
    sqlite_with_rowid=False
    )
    # Kept in (month, currency, customer) order, in the key itself on SQLite (no rowid table beside
    # it): top customers of a range read one stretch of it; a customer's own history reads the
    # schedule, whose key starts with the customer.
    op.create_table('revenue_customer_month_totals',
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('gross', sa.BigInteger(), nullable=False),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('month', 'currency', 'customer_id', name='pk_revenue_customer_month_totals'),
    sqlite_with_rowid=False
    )
    # Totals that came to nothing, found without reading the rest (a rebuild deletes them).
    empty = sa.text("gross = 0 AND net = 0")
    op.create_index('ix_revenue_customer_month_totals_empty', 'revenue_customer_month_totals', ['customer_id'],
                    sqlite_where=empty, postgresql_where=empty)
    dialect = op.get_bind().dialect.name
    _drop_views()
    for name in DROPPED:
        op.drop_index(name, table_name='revenue_schedule')
    # One unique key that is also the index a rebuild deletes by: rows are written in customer
    # order, so it grows at its end instead of in a million random places.
    with op.batch_alter_table('revenue_schedule') as batch_op:
        batch_op.drop_constraint('uq_revenue_schedule_line_month', type_='unique')
        batch_op.create_unique_constraint('uq_revenue_schedule_customer_line_month',
                                          ['customer_id', 'line_id', 'month'])
    for kind in ("plan", "charge"):
        where = sa.text(f"source_type = '{kind}'")
        op.create_index(f'ix_revenue_schedule_{kind}_month', 'revenue_schedule', ['month'],
                        sqlite_where=where, postgresql_where=where)
    # A plan's term and contract are read from its few invoices among a million.
    has_plan = sa.text("plan_key IS NOT NULL")
    op.create_index('ix_stripe_invoices_plan_key', 'stripe_invoices', ['plan_key'],
                    sqlite_where=has_plan, postgresql_where=has_plan)
    day = _booked_on(dialect)
    # Whatever the schedule holds now, summed once; every rebuild keeps them in step from here.
    op.execute(f"""INSERT INTO revenue_month_totals (month, booked_on, currency, source_type, gross, net)
SELECT month, {day}, currency, source_type, SUM(gross), SUM(net) FROM revenue_schedule
WHERE paid_at IS NOT NULL GROUP BY month, {day}, currency, source_type""")  # noqa: S608
    op.execute(f"""INSERT INTO revenue_customer_days (customer_id, booked_on, currency, currency_unit, gross, net)
SELECT customer_id, {day}, currency, MAX(currency_unit), SUM(gross), SUM(net) FROM revenue_schedule
WHERE paid_at IS NOT NULL AND customer_id IS NOT NULL GROUP BY customer_id, {day}, currency""")  # noqa: S608
    op.execute("""INSERT INTO revenue_customer_month_totals (customer_id, month, currency, gross, net)
SELECT customer_id, month, currency, SUM(gross), SUM(net) FROM revenue_schedule
WHERE paid_at IS NOT NULL AND customer_id IS NOT NULL GROUP BY customer_id, month, currency""")
    for name, key_column, key_alias in VIEWS:
        op.execute(_by_currency_sql(f"{name}_by_currency", key_column, key_alias, dialect))
        op.execute(_converted_sql(name, key_column, key_alias, dialect))
    _movement_views(dialect)


def downgrade() -> None:
    views = _migration("0007_revenue_views")
    dialect = op.get_bind().dialect.name
    _drop_views()
    op.drop_index('ix_stripe_invoices_plan_key', table_name='stripe_invoices')
    for kind in ("plan", "charge"):
        op.drop_index(f'ix_revenue_schedule_{kind}_month', table_name='revenue_schedule')
    with op.batch_alter_table('revenue_schedule') as batch_op:
        batch_op.drop_constraint('uq_revenue_schedule_customer_line_month', type_='unique')
        batch_op.create_unique_constraint('uq_revenue_schedule_line_month', ['line_id', 'month'])
    for name, columns in (("ix_revenue_schedule_customer_id", ['customer_id']), ("ix_revenue_schedule_month", ['month']),
                          ("ix_revenue_schedule_paid_at", ['paid_at']), ("ix_revenue_schedule_source_id", ['source_id']),
                          ("ix_revenue_schedule_customer_month", ['customer_id', 'month']),
                          ("ix_revenue_schedule_month_cover",
                           ['month', 'currency', 'customer_id', 'gross', 'net', 'paid_at']),
                          ("ix_revenue_schedule_customer_cover",
                           ['customer_id', 'currency', 'net', 'paid_at', 'currency_unit'])):
        op.create_index(name, 'revenue_schedule', columns)
    op.drop_table('revenue_customer_month_totals')
    op.drop_table('revenue_customer_days')
    op.drop_table('revenue_month_totals')
    for name, key_column, key_alias in VIEWS:
        op.execute(views._by_currency_sql(f"{name}_by_currency", key_column, key_alias, dialect))  # type: ignore[attr-defined]
        op.execute(views._converted_sql(name, key_column, key_alias, dialect))  # type: ignore[attr-defined]
    _movement_views(dialect)
