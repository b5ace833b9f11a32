"""campaigns, deliveries, contact hashes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 22:01:41.328358
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campaigns.models


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.add_column(sa.Column("campaign_id", sa.String(length=32), nullable=True))
    op.create_table('campaign',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('template', sa.String(length=200), nullable=False),
    sa.Column('locale', sa.String(length=8), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('campaign_category',
    sa.Column('campaign_id', sa.String(length=32), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'category')
    )
    op.create_table('contact_hash',
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('address_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('contact_id', 'key_id')
    )
    with op.batch_alter_table('contact_hash', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_hash_address_hash'), ['address_hash'], unique=False)

    op.create_table('delivery',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('campaign_id', sa.String(length=32), nullable=False),
    sa.Column('run', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('skip_reason', sa.String(length=32), nullable=True),
    sa.Column('basis_kind', sa.String(length=16), nullable=True),
    sa.Column('consent_event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('order_id', sa.String(length=128), nullable=True),
    sa.Column('queued_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', campaigns.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['consent_event_id'], ['consent_event.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'run', 'contact_id', name='uq_delivery_recipient')
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_campaign_status', ['campaign_id', 'status'], unique=False)
        batch_op.create_index('ix_delivery_contact_sent', ['contact_id', 'sent_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.drop_column("campaign_id")
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_contact_sent')
        batch_op.drop_index('ix_delivery_campaign_status')

    op.drop_table('delivery')
    with op.batch_alter_table('contact_hash', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_hash_address_hash'))

    op.drop_table('contact_hash')
    op.drop_table('campaign_category')
    op.drop_table('campaign')
