"""folded totals: per-organisation round totals and per-member running totals of finished rounds

Revision ID: 0010_folded_totals
Revises: 0009_folded_rounds
Create Date: 2026-11-26 10:40:00

A 党委's report over fifty rounds summed half a million member-rounds of the answer tally
(docs/benchmarks.md section 3). A finished round's member-rounds are folded once instead:
`roundorgtotals` (its totals per organisation) and `memberprefix` (each member's running totals
in the order rounds opened), so a long period reads a few thousand rows. They hold on-time
figures only; late answers (which may come after the fold) are read from the tally through a
partial index, `ix_answertally_late`.

The totals are attributed to the organisation a member was in when the round was folded, so a
trigger voids every fold when a member moves (it deletes the folds' fingerprint: reports stop
using them and the next fold starts over). Rounds are now folded strictly in the order they
opened, which the running totals need: the folds made before are dropped and made again.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.storage.models import UTCDateTime

revision: str = '0010_folded_totals'
down_revision: str | None = '0009_folded_rounds'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINGERPRINT_KEY = 'reports.folded_rounds'  # bot.reports.fold.FINGERPRINT_KEY
VOID_FOLDS = f"DELETE FROM keyvalue WHERE key = '{FINGERPRINT_KEY}'"


def upgrade() -> None:
    op.create_table('roundorgtotals',
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('pushed', sa.Integer(), nullable=False),
    sa.Column('answered', sa.Integer(), nullable=False),
    sa.Column('responded', sa.Integer(), nullable=False),
    sa.Column('answers', sa.Integer(), nullable=False),
    sa.Column('correct', sa.Integer(), nullable=False),
    sa.Column('retired', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], ),
    sa.PrimaryKeyConstraint('round_id', 'org_id'),
    sqlite_with_rowid=False,
    )
    op.create_table('memberprefix',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('opens_at', UTCDateTime(timezone=True), nullable=False),
    sa.Column('pushed', sa.Integer(), nullable=False),
    sa.Column('responded', sa.Integer(), nullable=False),
    sa.Column('answers', sa.Integer(), nullable=False),
    sa.Column('correct', sa.Integer(), nullable=False),
    sa.Column('missed', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], ),
    sa.PrimaryKeyConstraint('member_id', 'round_id'),
    sqlite_with_rowid=False,
    )
    op.create_index('ix_memberprefix_member_opens', 'memberprefix', ['member_id', 'opens_at', 'round_id'])
    # Late answers of folded rounds, found without reading the round's other member-rounds.
    op.create_index('ix_answertally_late', 'answertally', ['round_id', 'member_id'],
                    sqlite_where=sa.text('late > 0'), postgresql_where=sa.text('late > 0'))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"""CREATE FUNCTION qingfeng_void_folds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {VOID_FOLDS};
    RETURN NULL;
END $$""")
        op.execute("""CREATE TRIGGER member_moved_voids_folds AFTER UPDATE OF org_id ON member
FOR EACH ROW WHEN (OLD.org_id IS DISTINCT FROM NEW.org_id) EXECUTE FUNCTION qingfeng_void_folds()""")
    else:
        op.execute(f"""CREATE TRIGGER member_moved_voids_folds AFTER UPDATE OF org_id ON member
FOR EACH ROW WHEN OLD.org_id IS NOT NEW.org_id
BEGIN
    {VOID_FOLDS};
END""")
    # Made in the order rounds finished, not opened: start over.
    for table in ('topicreach', 'roundmarks', 'foldedround'):
        op.execute(f'DELETE FROM {table}')
    op.execute(VOID_FOLDS)


def downgrade() -> None:
    op.execute('DROP TRIGGER IF EXISTS member_moved_voids_folds' +
               (' ON member' if op.get_bind().dialect.name == 'postgresql' else ''))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS qingfeng_void_folds()')
    op.drop_index('ix_answertally_late', table_name='answertally')
    op.drop_index('ix_memberprefix_member_opens', table_name='memberprefix')
    op.drop_table('memberprefix')
    op.drop_table('roundorgtotals')
