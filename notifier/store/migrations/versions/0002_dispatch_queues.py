"""dispatch queues, receipts, fallback, dead push tokens, ops alerts

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("dispatch_pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("dispatch_gen", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("fallback_group", sa.String(length=700), nullable=True))
        batch.add_column(sa.Column("fallback_rank", sa.Integer(), nullable=True))
        batch.create_index("ix_notifications_pending", ["dispatch_pending"])
        batch.create_index("ix_notifications_fallback", ["fallback_group"])
        batch.create_index("ix_notifications_provider_id", ["provider_message_id"])
    # rows queued before this revision were sent by polling the ledger: hand them to the
    # dispatch queues
    op.execute(
        "UPDATE notifications SET dispatch_pending = true, dispatch_gen = 1 "
        "WHERE status IN ('queued', 'sending')"
    )
    op.create_table(
        "dead_push_tokens",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256"),
    )
    op.create_index("ix_dead_push_tokens_customer_id", "dead_push_tokens", ["customer_id"])
    op.create_index("ix_dead_push_tokens_created_at", "dead_push_tokens", ["created_at"])
    op.create_table(
        "ops_alerts",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_ops_alerts_subject", "ops_alerts", ["subject"])
    op.create_index("ix_ops_alerts_created_at", "ops_alerts", ["created_at"])


def downgrade() -> None:
    op.drop_table("ops_alerts")
    op.drop_table("dead_push_tokens")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_provider_id")
        batch.drop_index("ix_notifications_fallback")
        batch.drop_index("ix_notifications_pending")
        for column in (
            "fallback_rank",
            "fallback_group",
            "dispatch_gen",
            "dispatch_pending",
            "delivered_at",
        ):
            batch.drop_column(column)
