"""sign-ups, inbound review, consent confirmation time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 22:24:47.600031
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campaigns.models


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('inbound_review',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('received_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('signup',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('locale', sa.String(length=8), nullable=True),
    sa.Column('purposes', sa.String(length=500), nullable=False),
    sa.Column('wording', sa.Text(), nullable=False),
    sa.Column('wording_version', sa.String(length=64), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('created_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', campaigns.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('signup', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signup_email'), ['email'], unique=False)

    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confirmed_at', campaigns.models.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.drop_column('confirmed_at')

    with op.batch_alter_table('signup', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signup_email'))

    op.drop_table('signup')
    op.drop_table('inbound_review')
