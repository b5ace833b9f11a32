"""the customer exception ended by the person; links and events of tracking with consent

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campaigns.models
from campaigns.evidence.projections import PROJECTIONS, rebuild_statements


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_UTC = campaigns.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('soft_opt_in_objection',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('objected_at', _UTC, nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_soft_opt_in_objection_contact_id', 'soft_opt_in_objection', ['contact_id'])
    op.create_table('tracked_link',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('campaign_id', sa.String(length=32), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('clicks', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'url', name='uq_tracked_link_url')
    )
    op.create_table('tracking_event',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('delivery_id', _ID, nullable=False),
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('campaign_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('link_id', _ID, nullable=True),
    sa.Column('at', _UTC, nullable=False),
    sa.Column('scanner', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['delivery.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    for column in ('delivery_id', 'contact_id', 'campaign_id'):
        op.create_index(f'ix_tracking_event_{column}', 'tracking_event', [column])
    for table in ('purchase_standing', 'marketing_profile'):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column('soft_opt_in_ended_at', _UTC, nullable=True))
    # Every projection filled from the evidence with the statements that refresh them. This
    # is today's code, so it runs in the last migration that changed a projection's columns
    # (earlier ones leave the filling to it); a later such migration takes it over.
    for statement in rebuild_statements(PROJECTIONS):
        op.execute(statement)


def downgrade() -> None:
    # Before 0010 nothing can say that a person ended the customer exception: going back would
    # mail them under it again. Refused while anyone has.
    ended = op.get_bind().execute(sa.text('SELECT count(*) FROM soft_opt_in_objection')).scalar()
    if ended:
        raise RuntimeError(
            f'{ended} people ended the customer exception (soft_opt_in_objection): a downgrade'
            ' below 0010 would mail them under it again; refused'
        )
    for table in ('marketing_profile', 'purchase_standing'):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column('soft_opt_in_ended_at')
    op.drop_table('tracking_event')
    op.drop_table('tracked_link')
    op.drop_table('soft_opt_in_objection')
