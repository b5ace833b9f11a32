"""one marketing profile per contact, which the audience query reads in one pass

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 05:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import campaigns.models


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table('marketing_profile',
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('suppressed', sa.Boolean(), nullable=False),
    sa.Column('first_order_at', campaigns.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('opted_out_order_id', sa.String(length=128), nullable=True),
    sa.Column('consents', _JSON, nullable=True),
    sa.Column('covered_at', _JSON, nullable=True),
    sa.Column('covered_by', _JSON, nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('contact_id')
    )
    # The audience no longer reads one purpose's grants or one category's buyers in contact
    # order: these indexes only cost ingest time now.
    with op.batch_alter_table('current_consent', schema=None) as batch_op:
        batch_op.drop_index('ix_current_consent_granted', postgresql_include=['consent_event_id', 'captured_at'], postgresql_where=sa.text('granted'), sqlite_where=sa.text('granted'))
    with op.batch_alter_table('purchase_coverage', schema=None) as batch_op:
        batch_op.drop_index('ix_purchase_coverage_category', postgresql_include=['order_id', 'placed_at'])

    # Filled by 0010 (see 0005).


def downgrade() -> None:
    with op.batch_alter_table('purchase_coverage', schema=None) as batch_op:
        batch_op.create_index('ix_purchase_coverage_category', ['category', 'contact_id'], unique=False, postgresql_include=['order_id', 'placed_at'])
    with op.batch_alter_table('current_consent', schema=None) as batch_op:
        batch_op.create_index('ix_current_consent_granted', ['purpose', 'contact_id'], unique=False, postgresql_include=['consent_event_id', 'captured_at'], postgresql_where=sa.text('granted'), sqlite_where=sa.text('granted'))
    op.drop_table('marketing_profile')
