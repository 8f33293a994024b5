"""plan input fields may be NULL (a field that failed validation stays empty, never a default),
and a row keeps the change of its signed document when the order form is completed again

Revision ID: 0009_failed_fields_empty
Revises: 0006_web_sessions, 0007_revenue_recognition

"""
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0009_failed_fields_empty'
# 0006 and 0007 both follow 0005; this revision joins them.
down_revision: str | Sequence[str] | None = ('0006_web_sessions', '0007_revenue_recognition')
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (column, type) of every plan input field that had a default and so could not be empty.
NULLABLE: tuple[tuple[str, Any], ...] = (
    ('company_name', sa.String(length=200)),
    ('customer_email', sa.String(length=254)),
    ('credit_amount', sa.BigInteger()),
    ('discount', sa.Numeric(precision=6, scale=3)),
    ('price', sa.BigInteger()),
    ('currency', sa.String(length=3)),
    ('term_months', sa.Integer()),
    ('payment_schedule', sa.String(length=16)),
    ('credit_start', sa.String(length=32)),
    ('credit_release', sa.String(length=32)),
    ('payment_terms_days', sa.Integer()),
    ('products', sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table('plans') as batch:
        for name, kind in NULLABLE:
            batch.alter_column(name, existing_type=kind, nullable=True)
        batch.add_column(sa.Column('document_change', sa.JSON(), nullable=True))


def downgrade() -> None:
    # Empty fields get the defaults they had before (only needs-review rows have any).
    defaults = {'company_name': '', 'customer_email': '', 'credit_amount': 0, 'discount': 0, 'price': 0,
                'currency': 'usd', 'term_months': 12, 'payment_schedule': 'upfront', 'credit_start': 'immediately',
                'credit_release': 'all', 'payment_terms_days': 30, 'products': []}
    kinds = dict(NULLABLE)
    for name, value in defaults.items():
        plans = sa.table('plans', sa.column(name, kinds[name]))
        op.execute(plans.update().where(plans.c[name].is_(None)).values({name: value}))
    with op.batch_alter_table('plans') as batch:
        batch.drop_column('document_change')
        for name, kind in NULLABLE:
            batch.alter_column(name, existing_type=kind, nullable=False)
