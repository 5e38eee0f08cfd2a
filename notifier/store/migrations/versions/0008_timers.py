"""durable timers of the time rules

Revision ID: 0008
Revises: 0007

One row per order, rule and shipment: when it is due, what armed it, and whether it
fired; a poller claims due rows (``claimed_until``) and re-checks them against the
order's history before anything is sent.
"""

from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timers",
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("shipment", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("armed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "rule", "shipment"),
    )
    op.create_index("ix_timers_customer_id", "timers", ["customer_id"])
    op.create_index("ix_timers_due", "timers", ["fired_at", "due_at"])


def downgrade() -> None:
    op.drop_table("timers")
