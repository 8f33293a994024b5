"""revenue recognition: tax, balance applied, plan links and loss dates on the warehouse tables

Revision ID: 0007_revenue_recognition
Revises: 0005_revenue_indexes

The new columns are filled from each object's JSON as it is synced; after upgrading, run
`revops sync revenue --full` once so rows synced before carry them too (docs/revenue.md).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0007_revenue_recognition'
down_revision: Union[str, Sequence[str], None] = '0005_revenue_indexes'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('stripe_invoice_payments',
    sa.Column('invoice_id', sa.String(length=255), nullable=True),
    sa.Column('charge_id', sa.String(length=255), nullable=True),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
    sa.Column('amount_paid', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=True),
    sa.Column('raw', sa.JSON(), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('event_created', sa.BigInteger(), nullable=True),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stripe_invoice_payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_invoice_payments_created'), ['created'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_invoice_payments_invoice_id'), ['invoice_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_invoice_payments_charge_id'), ['charge_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_invoice_payments_payment_intent_id'), ['payment_intent_id'],
                              unique=False)
    with op.batch_alter_table('stripe_customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ledger_customer_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('plan_key', sa.String(length=300), nullable=True))
        batch_op.create_index(batch_op.f('ix_stripe_customers_ledger_customer_id'), ['ledger_customer_id'],
                              unique=False)
    with op.batch_alter_table('stripe_invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tax', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('balance_applied', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('plan_key', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('finalized_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('stripe_invoice_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tax_inclusive', sa.BigInteger(), server_default='0', nullable=False))
    with op.batch_alter_table('stripe_customer_balance_transactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan_key', sa.String(length=300), nullable=True))
    with op.batch_alter_table('stripe_credit_notes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('total_excluding_tax', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('stripe_disputes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lost_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('stripe_disputes', schema=None) as batch_op:
        batch_op.drop_column('lost_at')
    with op.batch_alter_table('stripe_credit_notes', schema=None) as batch_op:
        batch_op.drop_column('total_excluding_tax')
    with op.batch_alter_table('stripe_customer_balance_transactions', schema=None) as batch_op:
        batch_op.drop_column('plan_key')
    with op.batch_alter_table('stripe_invoice_lines', schema=None) as batch_op:
        batch_op.drop_column('tax_inclusive')
    with op.batch_alter_table('stripe_invoices', schema=None) as batch_op:
        batch_op.drop_column('finalized_at')
        batch_op.drop_column('plan_key')
        batch_op.drop_column('balance_applied')
        batch_op.drop_column('tax')
    with op.batch_alter_table('stripe_customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_customers_ledger_customer_id'))
        batch_op.drop_column('plan_key')
        batch_op.drop_column('ledger_customer_id')
    op.drop_table('stripe_invoice_payments')
