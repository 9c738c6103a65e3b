"""wechat and wecom: a lease on inbound callback rows (attempt, claimed_at) and a typed answer's pin

A row left "processing" by a worker that died is taken over by the next retry once its lease
runs out (bot/channels/wx_inbound.py).

Revision ID: 0003a_inbound_lease
Revises: 0003_wechat
Create Date: 2026-11-27 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.storage.models


revision: str = '0003a_inbound_lease'
down_revision: str | None = '0003_wechat'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('inboundmessage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('claimed_at', bot.storage.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('pin', sa.JSON(), nullable=True))
    # Rows from before: their lease starts when they were received.
    op.execute("UPDATE inboundmessage SET claimed_at = received_at")
    with op.batch_alter_table('inboundmessage', schema=None) as batch_op:
        batch_op.alter_column('claimed_at', existing_type=bot.storage.models.UTCDateTime(timezone=True),
                              nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('inboundmessage', schema=None) as batch_op:
        batch_op.drop_column('pin')
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('attempt')
