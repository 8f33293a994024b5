"""revenue views: recognised revenue by month, per customer-month, its movements and cohorts

Revision ID: 0010_revenue_movement_views
Revises: 0007_revenue_views, 0008_stripe_webhook_endpoints

Issue 16: SQL views beside `persons_revenue_analytics` for people who query the warehouse in SQL.
They read the revenue schedule (what finance recognised), per currency, in minor units:

- `revenue_deferred_schedule`: per month, currency and source (invoice, charge, plan, credit):
  gross and net recognised.
- `revenue_customer_months`: per customer, currency and month, the net recognised from invoice
  lines (subscriptions and invoiced items; one-off charges and prepaid plans apart).
- `revenue_mrr_movements`: each customer-month of that classified against the month before:
  new, reactivation (after a gap), expansion, contraction, flat, and a churn row in the month
  after a customer's last (once that month has begun).
- `revenue_cohorts`: customers by the month of their first such revenue, and per later month how
  many still pay and how much.

The API's bridge (`/api/revenue/bridge`) is MRR from subscription state; these views are its
counterpart from recognised revenue, so a trial or an unpaid invoice differs between the two.

Joins the two heads (the revenue branch and the web branch) into one.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0010_revenue_movement_views'
down_revision: str | Sequence[str] | None = ('0007_revenue_views', '0008_stripe_webhook_endpoints')
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = ("revenue_cohorts", "revenue_mrr_movements", "revenue_customer_months", "revenue_deferred_schedule")


def _sql(dialect: str) -> list[str]:
    if dialect == "postgresql":
        next_month = "CAST({m} + INTERVAL '1 month' AS DATE)"
        today = "CURRENT_DATE"
        months_between = ("CAST((EXTRACT(YEAR FROM {b}) - EXTRACT(YEAR FROM {a})) * 12 "
                          "+ EXTRACT(MONTH FROM {b}) - EXTRACT(MONTH FROM {a}) AS INTEGER)")
    else:
        next_month = "date({m}, '+1 month')"
        today = "date('now')"
        months_between = ("((CAST(strftime('%Y', {b}) AS INTEGER) - CAST(strftime('%Y', {a}) AS INTEGER)) * 12 "
                          "+ CAST(strftime('%m', {b}) AS INTEGER) - CAST(strftime('%m', {a}) AS INTEGER))")
    return [
        """
CREATE VIEW revenue_deferred_schedule AS
SELECT month, currency, source_type, SUM(gross) AS gross_minor, SUM(net) AS net_minor
FROM revenue_schedule
GROUP BY month, currency, source_type
""",
        """
CREATE VIEW revenue_customer_months AS
SELECT customer_id, currency, month, SUM(net) AS amount_minor
FROM revenue_schedule
WHERE source_type = 'invoice' AND customer_id IS NOT NULL
GROUP BY customer_id, currency, month
HAVING SUM(net) > 0
""",
        f"""
CREATE VIEW revenue_mrr_movements AS
WITH ordered AS (
  SELECT customer_id, currency, month, amount_minor,
         LAG(month) OVER w AS previous_month,
         LAG(amount_minor) OVER w AS previous_amount,
         LEAD(month) OVER w AS following_month
  FROM revenue_customer_months
  WINDOW w AS (PARTITION BY customer_id, currency ORDER BY month)
)
SELECT customer_id, currency, month,
       CASE WHEN previous_month IS NOT NULL AND {next_month.format(m='previous_month')} = month
            THEN previous_amount ELSE 0 END AS previous_minor,
       amount_minor,
       amount_minor - CASE WHEN previous_month IS NOT NULL AND {next_month.format(m='previous_month')} = month
                           THEN previous_amount ELSE 0 END AS change_minor,
       CASE WHEN previous_month IS NULL THEN 'new'
            WHEN {next_month.format(m='previous_month')} <> month THEN 'reactivation'
            WHEN amount_minor > previous_amount THEN 'expansion'
            WHEN amount_minor < previous_amount THEN 'contraction'
            ELSE 'flat' END AS movement
FROM ordered
UNION ALL
SELECT customer_id, currency, {next_month.format(m='month')} AS month, amount_minor AS previous_minor,
       0 AS amount_minor, -amount_minor AS change_minor, 'churn' AS movement
FROM ordered
WHERE (following_month IS NULL OR following_month <> {next_month.format(m='month')})
  AND {next_month.format(m='month')} <= {today}
""",
        f"""
CREATE VIEW revenue_cohorts AS
WITH firsts AS (
  SELECT customer_id, currency, MIN(month) AS cohort
  FROM revenue_customer_months
  GROUP BY customer_id, currency
)
SELECT f.cohort AS cohort, f.currency AS currency, m.month AS month,
       {months_between.format(a='f.cohort', b='m.month')} AS months_since_start,
       COUNT(DISTINCT m.customer_id) AS customers,
       SUM(m.amount_minor) AS amount_minor
FROM firsts f
JOIN revenue_customer_months m ON m.customer_id = f.customer_id AND m.currency = f.currency
GROUP BY f.cohort, f.currency, m.month
""",
    ]


def upgrade() -> None:
    for statement in _sql(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
