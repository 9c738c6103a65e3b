"""answer tally: a pushed flag per member and round (a delivery exists), backfilled

Revision ID: 0006_tally_pushed
Revises: 0005_answer_tally
Create Date: 2026-11-28 00:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006_tally_pushed'
down_revision: str | None = '0005_answer_tally'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('answertally', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pushed', sa.Integer(), nullable=False, server_default='0'))
    # Backfill: every delivery marks its member-round (bot.reports.tally.RECOUNT_SELECT).
    op.execute("""INSERT INTO answertally (member_id, round_id, on_time, on_time_correct, late, pushed)
SELECT member_id, round_id, 0, 0, 0, 1 FROM delivery WHERE true
ON CONFLICT (member_id, round_id) DO UPDATE SET pushed = 1""")


def downgrade() -> None:
    op.execute("DELETE FROM answertally WHERE on_time = 0 AND late = 0")
    with op.batch_alter_table('answertally', schema=None) as batch_op:
        batch_op.drop_column('pushed')
