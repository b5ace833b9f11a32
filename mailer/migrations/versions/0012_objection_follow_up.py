"""objections whose consequences are drawn after the answer (the one-click path)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('suppression') as batch:
        batch.add_column(
            sa.Column('follow_up_due', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_index(
        'ix_suppression_follow_up_due',
        'suppression',
        ['id'],
        postgresql_where=sa.text('follow_up_due'),
        sqlite_where=sa.text('follow_up_due'),
    )


def downgrade() -> None:
    op.drop_index('ix_suppression_follow_up_due', table_name='suppression')
    with op.batch_alter_table('suppression') as batch:
        batch.drop_column('follow_up_due')
