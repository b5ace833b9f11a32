"""deliveries keep no foreign key to their campaign

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 01:50:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The foreign key of 0002 has no name of its own: PostgreSQL named it
# <table>_<column>_fkey; SQLite keeps none, so batch mode needs a naming convention to find it.
_NAMES = {'fk': '%(table_name)s_%(column_0_name)s_fkey'}
_FK = 'delivery_campaign_id_fkey'


def upgrade() -> None:
    # Checked row by row (a lock on the same campaign row for each of a run's deliveries), the
    # key cost materialise 2-3 s of 15 at 365,000 deliveries; see campaigns/models.py.
    with op.batch_alter_table('delivery', schema=None, naming_convention=_NAMES) as batch_op:
        batch_op.drop_constraint(_FK, type_='foreignkey')


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None, naming_convention=_NAMES) as batch_op:
        batch_op.create_foreign_key(_FK, 'campaign', ['campaign_id'], ['id'], ondelete='CASCADE')
