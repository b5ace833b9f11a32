"""contacts, consent evidence, orders, suppression, api keys

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 21:47:24.248584
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campaigns.models


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_key',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', campaigns.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('contact',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('locale', sa.String(length=8), nullable=True),
    sa.Column('source_channel', sa.String(length=64), nullable=False),
    sa.Column('source_url', sa.String(length=2048), nullable=True),
    sa.Column('created_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email'),
    sa.UniqueConstraint('external_id')
    )
    op.create_table('suppression',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('address_hash', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('created_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', campaigns.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('suppression', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_suppression_address_hash'), ['address_hash'], unique=False)

    op.create_table('consent_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('granted', sa.Boolean(), nullable=False),
    sa.Column('captured_at', campaigns.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('wording', sa.Text(), nullable=True),
    sa.Column('wording_version', sa.String(length=64), nullable=True),
    sa.Column('channel', sa.String(length=64), nullable=True),
    sa.Column('url', sa.String(length=2048), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('checkbox_prechecked', sa.Boolean(), nullable=True),
    sa.Column('capture_method', sa.String(length=32), nullable=False),
    sa.Column('valid', sa.Boolean(), nullable=False),
    sa.Column('refused_reason', sa.String(length=64), nullable=True),
    sa.Column('recorded_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('contact_id', 'fingerprint', name='uq_consent_event_fingerprint')
    )
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.create_index('ix_consent_event_contact_purpose', ['contact_id', 'purpose', 'captured_at'], unique=False)

    op.create_table('shop_order',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('placed_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('opt_out_offered', sa.Boolean(), nullable=False),
    sa.Column('opt_out_used', sa.Boolean(), nullable=False),
    sa.Column('recorded_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('shop_order', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shop_order_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_shop_order_email'), ['email'], unique=False)

    op.create_table('order_category',
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['shop_order.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('order_id', 'category')
    )
    with op.batch_alter_table('order_category', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_category_category'), ['category'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('order_category', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_category_category'))

    op.drop_table('order_category')
    with op.batch_alter_table('shop_order', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shop_order_email'))
        batch_op.drop_index(batch_op.f('ix_shop_order_contact_id'))

    op.drop_table('shop_order')
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_event_contact_purpose')

    op.drop_table('consent_event')
    with op.batch_alter_table('suppression', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_suppression_address_hash'))

    op.drop_table('suppression')
    op.drop_table('contact')
    op.drop_table('api_key')
