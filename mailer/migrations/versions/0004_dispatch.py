"""schedules, runs, dispatch state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 22:37:44.809440
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campaigns.models


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('campaign_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('campaign_id', sa.String(length=32), nullable=False),
    sa.Column('scheduled_for', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', campaigns.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'scheduled_for', name='uq_campaign_run_firing')
    )
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_at', campaigns.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cron', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('paused_reason', sa.String(length=200), nullable=True))

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_attempt_at', campaigns.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claimed_at', campaigns.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(length=300), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_column('last_error')
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')

    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.drop_column('paused_reason')
        batch_op.drop_column('timezone')
        batch_op.drop_column('cron')
        batch_op.drop_column('send_at')

    op.drop_table('campaign_run')
