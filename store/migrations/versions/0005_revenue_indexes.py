"""revenue schedule: covering indexes for the report queries; the warehouse version row

Revision ID: 0005_revenue_indexes
Revises: 0004_warehouse

"""
from typing import Sequence, Union

from alembic import op


revision: str = '0005_revenue_indexes'
down_revision: Union[str, Sequence[str], None] = '0004_warehouse'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('ix_revenue_schedule_month_cover', 'revenue_schedule',
                    ['month', 'currency', 'customer_id', 'gross', 'net', 'paid_at'], unique=False)
    op.create_index('ix_revenue_schedule_customer_cover', 'revenue_schedule',
                    ['customer_id', 'currency', 'net', 'paid_at', 'currency_unit'], unique=False)
    # Bumped by every warehouse write; the revenue reports cache on it (store.warehouse.touch).
    op.execute("INSERT INTO revenue_sync_cursors (name, value, updated_at) "
               "VALUES ('warehouse_version', 0, CURRENT_TIMESTAMP)")


def downgrade() -> None:
    op.execute("DELETE FROM revenue_sync_cursors WHERE name = 'warehouse_version'")
    op.drop_index('ix_revenue_schedule_customer_cover', table_name='revenue_schedule')
    op.drop_index('ix_revenue_schedule_month_cover', table_name='revenue_schedule')
