"""folded rounds: topic reach and round marks of finished rounds, for long reports

Revision ID: 0009_folded_rounds
Revises: 0008_tally_cover
Create Date: 2026-11-26 08:30:00

Empty at first: `bot.reports.fold.fold_finished_rounds` fills them (the scheduler's tick, `dev
seed`), and reports read the answers as before until it has.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.storage.models import UTCDateTime

revision: str = '0009_folded_rounds'
down_revision: str | None = '0008_tally_cover'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('topicreach',
    sa.Column('topic', sa.String(length=40), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('last_opens_at', UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.PrimaryKeyConstraint('topic', 'member_id'),
    sqlite_with_rowid=False,
    )
    op.create_table('roundmarks',
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.String(length=64), nullable=False),
    sa.Column('mark', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], ),
    sa.PrimaryKeyConstraint('round_id', 'item_id', 'mark', 'total'),
    sqlite_with_rowid=False,
    )
    op.create_table('foldedround',
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('folded_at', UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], ),
    sa.PrimaryKeyConstraint('round_id'),
    )


def downgrade() -> None:
    op.drop_table('foldedround')
    op.drop_table('roundmarks')
    op.drop_table('topicreach')
