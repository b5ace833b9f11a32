"""the live sending processes, among which the relay's limits are shared; a campaign's
counts by run and status from one index

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 15:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from campaigns.models import UTCDateTime

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'sending_process',
        sa.Column('id', sa.String(length=100), primary_key=True),
        sa.Column('seen_at', UTCDateTime(), nullable=False),
    )
    op.create_index('ix_sending_process_seen_at', 'sending_process', ['seen_at'])
    with op.batch_alter_table('delivery') as batch:
        batch.create_index('ix_delivery_campaign_run_status', ['campaign_id', 'run', 'status'])
        batch.drop_index('ix_delivery_campaign_status')


def downgrade() -> None:
    with op.batch_alter_table('delivery') as batch:
        batch.create_index('ix_delivery_campaign_status', ['campaign_id', 'status'])
        batch.drop_index('ix_delivery_campaign_run_status')
    op.drop_index('ix_sending_process_seen_at', table_name='sending_process')
    op.drop_table('sending_process')
