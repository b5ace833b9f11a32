"""the acknowledgements of opt-outs as a durable outbox

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campaigns.models


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_UTC = campaigns.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('acknowledgement',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', _UTC, nullable=False),
    sa.Column('claimed_at', _UTC, nullable=True),
    sa.Column('sent_at', _UTC, nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_acknowledgement_contact_id', 'acknowledgement', ['contact_id'])
    op.create_index('ix_acknowledgement_sent_at', 'acknowledgement', ['sent_at'])


def downgrade() -> None:
    op.drop_table('acknowledgement')
