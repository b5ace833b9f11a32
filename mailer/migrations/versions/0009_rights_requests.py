"""people's rights: the log of rights requests (export, erasure)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campaigns.models


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('rights_request',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('contact_id', sa.String(length=32), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('requested_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rights_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rights_request_contact_id'), ['contact_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('rights_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rights_request_contact_id'))
    op.drop_table('rights_request')
