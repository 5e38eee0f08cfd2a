"""fallback lookups by group and status

Revision ID: 0003
Revises: 0002

SQLite answered "the standby rows of this fallback group" from the (status, channel,
next_attempt_at) index, scanning every standby row in the ledger for each send that
got through: 2.6 ms per send with 12,000 rows on standby, growing with the ledger.
"""

from alembic import op


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_notifications_fallback", table_name="notifications")
    op.create_index(
        "ix_notifications_fallback", "notifications", ["fallback_group", "status", "fallback_rank"]
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_fallback", table_name="notifications")
    op.create_index("ix_notifications_fallback", "notifications", ["fallback_group"])
