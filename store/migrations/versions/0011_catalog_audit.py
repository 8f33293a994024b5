"""catalog audit: changes made outside a plan row (bespoke prices, price moves, discounts, timers)

Revision ID: 0011_catalog_audit
Revises: 0010_revenue_movement_views
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_catalog_audit'
down_revision: str | Sequence[str] | None = '0010_revenue_movement_views'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('catalog_audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=254), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=255), nullable=True),
    sa.Column('subscription_id', sa.String(length=255), nullable=True),
    sa.Column('price_id', sa.String(length=255), nullable=True),
    sa.Column('plan_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_catalog_audit_customer_id', 'catalog_audit', ['customer_id'], unique=False)
    op.create_index('ix_catalog_audit_subscription_id', 'catalog_audit', ['subscription_id'], unique=False)
    op.create_index('ix_catalog_audit_action_at', 'catalog_audit', ['action', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_catalog_audit_action_at', table_name='catalog_audit')
    op.drop_index('ix_catalog_audit_subscription_id', table_name='catalog_audit')
    op.drop_index('ix_catalog_audit_customer_id', table_name='catalog_audit')
    op.drop_table('catalog_audit')
