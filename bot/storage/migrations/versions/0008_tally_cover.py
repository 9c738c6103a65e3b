"""answer tally: a covering index by member on PostgreSQL (index-only reads for reports)

Revision ID: 0008_tally_cover
Revises: 0007_item_tally
Create Date: 2026-11-26 04:05:00

A branch's rank among its siblings reads the parent's member-rounds member by member (51,000
rows for a 党总支's 50 rounds). The tally's heap is in the order rows were made — round by
round — so on PostgreSQL each member's rows sat on as many pages as rounds; with the counts in
the index the read is index-only (docs/benchmarks.md section 3: the sibling rank 62 -> 14 ms).
SQLite's tally is WITHOUT ROWID, already ordered by (member_id, round_id): nothing to add.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0008_tally_cover'
down_revision: str | None = '0007_item_tally'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ['on_time', 'on_time_correct', 'late', 'pushed']


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.create_index('ix_answertally_member_cover', 'answertally', ['member_id', 'round_id'],
                        postgresql_include=COUNTS)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_answertally_member_cover', table_name='answertally')
