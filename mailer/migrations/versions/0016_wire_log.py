"""the wire journal: what of a handed-over batch was on the wire, and what the relay said,
so that a crash leaves `unknown` only what was on the wire

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 14:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from campaigns.models import UTCDateTime

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'wire_log',
        sa.Column('key', sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column('written_at', UTCDateTime(), nullable=False),
        sa.Column('ids', sa.Text(), nullable=False),
        sa.Column('states', sa.Text(), nullable=False),
        sa.Column('details', sa.Text(), nullable=True),
    )
    with op.batch_alter_table('delivery') as batch:
        batch.add_column(
            sa.Column(
                'handoff', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('delivery') as batch:
        batch.drop_column('handoff')
    op.drop_table('wire_log')
