"""Customer month totals keyed by (currency, month, customer) (issue 13)

Revision ID: 0014_customer_month_by_currency
Revises: 0013_mrr_aggregates

Top customers of a range read the reporting currency's rows and, apart, every other currency's:
with the currency first in the key both are stretches of it, and a warehouse in one currency
finds no other currency without reading anything (the month-first key read the range twice).
The table is rebuilt with its new key; its rows are kept.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014_customer_month_by_currency'
down_revision: str | Sequence[str] | None = '0013_mrr_aggregates'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = 'revenue_customer_month_totals'
EMPTY_INDEX = 'ix_revenue_customer_month_totals_empty'


def _rekey(columns: str) -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'ALTER TABLE {TABLE} DROP CONSTRAINT pk_revenue_customer_month_totals')
        op.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT pk_revenue_customer_month_totals PRIMARY KEY ({columns})')
        return
    # SQLite: the key is the table itself (no rowid table beside it), so the table is made again
    # beside the old one and takes its name. SQLite runs these statements one by one (DDL does not
    # open the driver's transaction): each state a crash can leave is picked up by running the
    # upgrade again — a half-made copy is made again, a copy whose original is gone takes its name.
    new = f'{TABLE}_rekeyed'
    tables = set(sa.inspect(op.get_bind()).get_table_names())
    if TABLE in tables:
        op.execute(f'DROP TABLE IF EXISTS {new}')
        op.execute(f"""CREATE TABLE {new} (
    customer_id VARCHAR(255) NOT NULL,
    month DATE NOT NULL,
    currency VARCHAR(3) NOT NULL,
    gross BIGINT NOT NULL,
    net BIGINT NOT NULL,
    CONSTRAINT pk_revenue_customer_month_totals PRIMARY KEY ({columns})
) WITHOUT ROWID""")
        op.execute(f'INSERT INTO {new} (customer_id, month, currency, gross, net) '  # noqa: S608 - fixed names
                   f'SELECT customer_id, month, currency, gross, net FROM {TABLE} ORDER BY {columns}')
        op.execute(f'DROP TABLE {TABLE}')  # its partial index goes with it
    op.execute(f'ALTER TABLE {new} RENAME TO {TABLE}')
    op.execute(f'CREATE INDEX {EMPTY_INDEX} ON {TABLE} (customer_id) WHERE gross = 0 AND net = 0')


def upgrade() -> None:
    _rekey('currency, month, customer_id')


def downgrade() -> None:
    _rekey('month, currency, customer_id')
