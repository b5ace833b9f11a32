"""the return channel: every inbound report stored raw first, per-run counts per domain

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campaigns.models


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('inbound_message',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('received_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('truncated', sa.Boolean(), nullable=False),
    sa.Column('null_sender', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=True),
    sa.Column('rule', sa.String(length=100), nullable=True),
    sa.Column('form', sa.String(length=16), nullable=True),
    sa.Column('status_code', sa.String(length=16), nullable=True),
    sa.Column('diagnostic', sa.String(length=300), nullable=True),
    sa.Column('feedback_type', sa.String(length=32), nullable=True),
    sa.Column('reported_recipient', sa.String(length=320), nullable=True),
    sa.Column('delivery_id', _ID, nullable=True),
    sa.Column('event_key', sa.String(length=200), nullable=True),
    sa.Column('decided_at', campaigns.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_key')
    )
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_message_state', ['state', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_message_delivery_id'), ['delivery_id'], unique=False)
    # What the first wave kept for review moves over, as review items.
    op.execute(
        "INSERT INTO inbound_message"
        " (received_at, channel, recipient, raw, truncated, null_sender, state, rule)"
        " SELECT received_at, 'smtp', recipient, CAST(message AS BLOB), false, false, 'review',"
        " reason"
        " FROM inbound_review"
        if op.get_bind().dialect.name == 'sqlite' else
        "INSERT INTO inbound_message"
        " (received_at, channel, recipient, raw, truncated, null_sender, state, rule)"
        " SELECT received_at, 'smtp', recipient, convert_to(message, 'UTF8'), false, false,"
        " 'review', reason"
        " FROM inbound_review"
    )
    op.drop_table('inbound_review')
    op.create_table('run_domain_count',
    sa.Column('run_id', _ID, nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('delivered', sa.Integer(), nullable=False),
    sa.Column('hard_bounces', sa.Integer(), nullable=False),
    sa.Column('soft_bounces', sa.Integer(), nullable=False),
    sa.Column('blocks', sa.Integer(), nullable=False),
    sa.Column('complaints', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('run_id', 'domain')
    )
    with op.batch_alter_table('campaign_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('guard_tripped', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('campaign_run', schema=None) as batch_op:
        batch_op.drop_column('guard_tripped')
    op.drop_table('run_domain_count')
    op.create_table('inbound_review',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('received_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.drop_table('inbound_message')
