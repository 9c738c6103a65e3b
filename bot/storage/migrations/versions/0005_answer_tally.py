"""answer tally: answers per member and round for reports (issue #8), backfilled

Revision ID: 0005_answer_tally
Revises: 0001
Create Date: 2026-11-27 22:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005_answer_tally'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('answertally',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('on_time', sa.Integer(), nullable=False),
    sa.Column('on_time_correct', sa.Integer(), nullable=False),
    sa.Column('late', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], ),
    sa.PrimaryKeyConstraint('member_id', 'round_id'),
    sqlite_with_rowid=False,
    )
    op.create_index('ix_answertally_round_member', 'answertally', ['round_id', 'member_id'], unique=False)
    # Backfill: the same definition as bot.reports.tally.RECOUNT_SELECT.
    op.execute("""INSERT INTO answertally (member_id, round_id, on_time, on_time_correct, late)
SELECT member_id, round_id,
       SUM(CASE WHEN NOT late THEN 1 ELSE 0 END),
       SUM(CASE WHEN NOT late AND correct THEN 1 ELSE 0 END),
       SUM(CASE WHEN late THEN 1 ELSE 0 END)
FROM answer
GROUP BY member_id, round_id""")


def downgrade() -> None:
    op.drop_index('ix_answertally_round_member', table_name='answertally')
    op.drop_table('answertally')
