"""projections of the evidence: current consent, purchase coverage and standing

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 00:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campaigns.models


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The foreign keys of 0002 have no name of their own: PostgreSQL named them
# <table>_<column>_fkey; SQLite keeps none, so batch mode needs a naming convention to find them.
_NAMES = {'fk': '%(table_name)s_%(column_0_name)s_fkey'}


def _fk(column: str) -> str:
    return f'delivery_{column}_fkey'


def upgrade() -> None:
    op.create_table('current_consent',
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('consent_event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('granted', sa.Boolean(), nullable=False),
    sa.Column('captured_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('contact_id', 'purpose')
    )
    with op.batch_alter_table('current_consent', schema=None) as batch_op:
        batch_op.create_index('ix_current_consent_granted', ['purpose', 'contact_id'], unique=False, postgresql_include=['consent_event_id', 'captured_at'], postgresql_where=sa.text('granted'), sqlite_where=sa.text('granted'))

    op.create_table('purchase_coverage',
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('placed_at', campaigns.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('contact_id', 'category')
    )
    with op.batch_alter_table('purchase_coverage', schema=None) as batch_op:
        batch_op.create_index('ix_purchase_coverage_category', ['category', 'contact_id'], unique=False, postgresql_include=['order_id', 'placed_at'])

    op.create_table('purchase_standing',
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('first_order_at', campaigns.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('opted_out_order_id', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('contact_id')
    )

    # Deliveries keep no foreign key to contact and consent event (see campaigns/models.py):
    # checked row by row, they doubled the time to materialise an audience.
    with op.batch_alter_table('delivery', schema=None, naming_convention=_NAMES) as batch_op:
        batch_op.drop_constraint(_fk('contact_id'), type_='foreignkey')
        batch_op.drop_constraint(_fk('consent_event_id'), type_='foreignkey')

    # Filled from the evidence by 0010, the last migration that changed their columns: the
    # statements that refresh them are today's code, which names columns not made yet here.


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None, naming_convention=_NAMES) as batch_op:
        batch_op.create_foreign_key(_fk('contact_id'), 'contact', ['contact_id'], ['id'], ondelete='CASCADE')
        batch_op.create_foreign_key(_fk('consent_event_id'), 'consent_event', ['consent_event_id'], ['id'], ondelete='CASCADE')

    op.drop_table('purchase_standing')
    with op.batch_alter_table('purchase_coverage', schema=None) as batch_op:
        batch_op.drop_index('ix_purchase_coverage_category', postgresql_include=['order_id', 'placed_at'])

    op.drop_table('purchase_coverage')
    with op.batch_alter_table('current_consent', schema=None) as batch_op:
        batch_op.drop_index('ix_current_consent_granted', postgresql_include=['consent_event_id', 'captured_at'], postgresql_where=sa.text('granted'), sqlite_where=sa.text('granted'))

    op.drop_table('current_consent')
