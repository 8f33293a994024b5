"""MRR pre-aggregates (issue 13): per-customer MRR over runs of snapshot days and the bridge per
pair of days, currency and cohort, maintained by every revenue rebuild (store/mrr_aggregates.py)

Revision ID: 0013_mrr_aggregates
Revises: 0012_revenue_aggregates
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013_mrr_aggregates'
down_revision: str | Sequence[str] | None = '0012_revenue_aggregates'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mrr_customer_runs',
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('from_day', sa.Date(), nullable=False),
    sa.Column('to_day', sa.Date(), nullable=False),
    sa.Column('mrr', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', 'currency', 'from_day')
    )
    op.create_table('mrr_customers',
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('first_paying_day', sa.Date(), nullable=False),
    sa.Column('cohort_month', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('customer_id')
    )
    op.create_table('mrr_bridge',
    sa.Column('end_day', sa.Date(), nullable=False),
    sa.Column('start_day', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('cohort_month', sa.Date(), nullable=False),
    *(sa.Column(name, sa.BigInteger(), nullable=False) for name in (
        'start_mrr', 'new', 'reactivation', 'expansion', 'contraction', 'churned', 'end_mrr', 'capped_end_mrr')),
    sa.PrimaryKeyConstraint('end_day', 'start_day', 'currency', 'cohort_month')
    )
    op.create_table('mrr_bridge_customers',
    sa.Column('end_day', sa.Date(), nullable=False),
    sa.Column('start_day', sa.Date(), nullable=False),
    sa.Column('cohort_month', sa.Date(), nullable=False),
    *(sa.Column(name, sa.Integer(), nullable=False) for name in (
        'start_customers', 'new_customers', 'reactivated_customers', 'churned_customers', 'end_customers')),
    sa.PrimaryKeyConstraint('end_day', 'start_day', 'cohort_month')
    )
    op.create_table('mrr_cohorts',
    sa.Column('cohort_month', sa.Date(), nullable=False),
    sa.Column('customers', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('cohort_month')
    )
    op.create_table('mrr_scheduled_churn',
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('churn_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('customer_id')
    )
    op.create_table('mrr_left_out',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('message', sa.String(length=1000), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_mrr_left_out_customer_id', 'mrr_left_out', ['customer_id'], unique=False)
    op.create_table('mrr_refresh',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('refresh_day', sa.Date(), nullable=False),
    sa.Column('first_month', sa.Date(), nullable=False),
    sa.Column('refreshed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('mrr_refresh')
    op.drop_index('ix_mrr_left_out_customer_id', table_name='mrr_left_out')
    op.drop_table('mrr_left_out')
    op.drop_table('mrr_scheduled_churn')
    op.drop_table('mrr_cohorts')
    op.drop_table('mrr_bridge_customers')
    op.drop_table('mrr_bridge')
    op.drop_table('mrr_customers')
    op.drop_table('mrr_customer_runs')
