"""stripe webhook endpoints: the endpoint registered in one click and its signing secret

Revision ID: 0008_stripe_webhook_endpoints
Revises: 0009_failed_fields_empty

Numbered 0008 but written after 0009_failed_fields_empty (which joined the 0006 and 0007 heads):
it follows that single head, so the chain stays linear.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0008_stripe_webhook_endpoints'
down_revision: Union[str, Sequence[str], None] = '0009_failed_fields_empty'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('stripe_webhook_endpoints',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('api_version', sa.String(length=64), nullable=False),
    sa.Column('enabled_events', sa.JSON(), nullable=False),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=254), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('stripe_webhook_endpoints')
