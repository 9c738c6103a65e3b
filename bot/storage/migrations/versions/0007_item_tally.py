"""item tally: on-time answers per round, item, choice and shard for reports, backfilled

Revision ID: 0007_item_tally
Revises: 0006_tally_pushed
Create Date: 2026-11-26 03:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_item_tally'
down_revision: str | None = '0006_tally_pushed'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('itemtally',
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.String(length=64), nullable=False),
    sa.Column('choice', sa.String(length=8), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('answers', sa.Integer(), nullable=False),
    sa.Column('correct', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], ),
    sa.PrimaryKeyConstraint('round_id', 'item_id', 'choice', 'shard'),
    sqlite_with_rowid=False,
    )
    # Backfill: the same definition as bot.reports.tally.ITEM_DEFINITION.
    op.execute("""INSERT INTO itemtally (round_id, item_id, choice, shard, answers, correct)
SELECT round_id, item_id, choice, member_id % 16, COUNT(*), SUM(CASE WHEN correct THEN 1 ELSE 0 END)
FROM answer
WHERE NOT late
GROUP BY round_id, item_id, choice, member_id % 16""")


def downgrade() -> None:
    op.drop_table('itemtally')
