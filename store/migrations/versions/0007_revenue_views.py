"""revenue views: one row per person / group in the reporting currency; per-currency views beside

Revision ID: 0007_revenue_views
Revises: 0007_revenue_recognition

Issue 18 defect 7: `persons_revenue_analytics` had a row per person and currency, so the seed's
`SELECT COUNT(*) FROM persons_revenue_analytics WHERE amount > 1000000` counted ¥2,000,000 as a
million-dollar customer and a person with two currencies twice. Now `persons_revenue_analytics`
(and `groups_…`) has one row per person in the reporting currency (`revenue_reporting`, kept equal
to REPORTING_CURRENCY by the revenue rebuild), each currency converted at its newest rate in
`exchange_rates`; revenue in a currency without a rate is left out there and stays visible in
`persons_revenue_analytics_by_currency` (the old shape).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_revenue_views'
down_revision: str | Sequence[str] | None = '0007_revenue_recognition'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = (("persons_revenue_analytics", "person_distinct_id", "person_id"),
         ("groups_revenue_analytics", "group_key", "group_key"))


def _by_currency_sql(view: str, key_column: str, key_alias: str, dialect: str) -> str:
    """The 0004 view's query: a row per person (group) and currency, amounts in that currency."""
    if dialect == "postgresql":
        amount = "CAST(SUM(r.net) AS NUMERIC(24, 3)) / MAX(r.currency_unit)"
        recent = "r.paid_at >= CURRENT_TIMESTAMP - INTERVAL '30 days'"
        recent_major = f"CAST(SUM(CASE WHEN {recent} THEN r.net ELSE 0 END) AS NUMERIC(24, 3)) / MAX(r.currency_unit)"
    else:
        amount = "SUM(r.net) * 1.0 / MAX(r.currency_unit)"
        recent = "r.paid_at >= datetime('now', '-30 days')"
        recent_major = f"SUM(CASE WHEN {recent} THEN r.net ELSE 0 END) * 1.0 / MAX(r.currency_unit)"
    return f"""
CREATE VIEW {view} AS
SELECT c.{key_column} AS {key_alias},
       r.currency AS currency,
       {amount} AS amount,
       {recent_major} AS amount_last_30_days,
       SUM(r.net) AS amount_minor,
       SUM(CASE WHEN {recent} THEN r.net ELSE 0 END) AS amount_last_30_days_minor,
       COUNT(DISTINCT c.id) AS customers
FROM revenue_schedule r
JOIN stripe_customers c ON c.id = r.customer_id
WHERE c.{key_column} IS NOT NULL
GROUP BY c.{key_column}, r.currency
"""


def _converted_sql(name: str, key_column: str, key_alias: str, dialect: str) -> str:
    if dialect == "postgresql":
        major = "CAST(r.net AS NUMERIC(30, 12)) / r.currency_unit"
        recent = "r.paid_at >= CURRENT_TIMESTAMP - INTERVAL '30 days'"
        today = "CURRENT_DATE"
        whole = "CAST(ROUND({x}) AS BIGINT)"
    else:
        major = "r.net * 1.0 / r.currency_unit"
        recent = "r.paid_at >= datetime('now', '-30 days')"
        today = "date('now')"
        whole = "CAST(ROUND({x}) AS INTEGER)"
    rate = "(CASE WHEN r.currency = rep.currency THEN 1 ELSE x.rate END)"
    converted = f"SUM({major} * {rate})"
    converted_recent = f"SUM(CASE WHEN {recent} THEN {major} * {rate} ELSE 0 END)"
    return f"""
CREATE VIEW {name} AS
SELECT c.{key_column} AS {key_alias},
       rep.currency AS currency,
       {converted} AS amount,
       {converted_recent} AS amount_last_30_days,
       {whole.format(x=converted + ' * MAX(rep.currency_unit)')} AS amount_minor,
       {whole.format(x=converted_recent + ' * MAX(rep.currency_unit)')} AS amount_last_30_days_minor,
       COUNT(DISTINCT c.id) AS customers
FROM revenue_schedule r
JOIN stripe_customers c ON c.id = r.customer_id
CROSS JOIN revenue_reporting rep
LEFT JOIN exchange_rates x
  ON x.currency = r.currency AND x.reporting_currency = rep.currency
 AND x.valid_from = (SELECT MAX(x2.valid_from) FROM exchange_rates x2
                     WHERE x2.currency = x.currency AND x2.reporting_currency = x.reporting_currency
                       AND x2.valid_from <= {today})
WHERE c.{key_column} IS NOT NULL AND (r.currency = rep.currency OR x.rate IS NOT NULL)
GROUP BY c.{key_column}, rep.currency
"""


def upgrade() -> None:
    op.create_table('revenue_reporting',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('currency_unit', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.execute("INSERT INTO revenue_reporting (id, currency, currency_unit) VALUES (1, 'usd', 100)")
    dialect = op.get_bind().dialect.name
    for name, key_column, key_alias in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(_by_currency_sql(f"{name}_by_currency", key_column, key_alias, dialect))
        op.execute(_converted_sql(name, key_column, key_alias, dialect))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, key_column, key_alias in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"DROP VIEW IF EXISTS {name}_by_currency")
        op.execute(_by_currency_sql(name, key_column, key_alias, dialect))  # the 0004 shape
    op.drop_table('revenue_reporting')
