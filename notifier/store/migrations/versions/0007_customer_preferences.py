"""customer preferences, and each notification's category and unsubscribe link

Revision ID: 0007
Revises: 0006

One row per customer who stored preferences (channels per category, contact
overrides, quiet hours, muted orders). A notification keeps its rule's category, so
an opt-out is checked again when it is claimed, and an alert its one-click
unsubscribe link (the email's ``List-Unsubscribe``). Rows written before this have
neither: NULL reads as transactional, without a link.
"""

from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_preferences",
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("transactional_channels", sa.JSON(), nullable=True),
        sa.Column("alerts_channels", sa.JSON(), nullable=True),
        sa.Column("preferred_channel", sa.String(length=20), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("locale", sa.String(length=35), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("quiet_hours_start", sa.String(length=5), nullable=True),
        sa.Column("quiet_hours_end", sa.String(length=5), nullable=True),
        sa.Column("muted_orders", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_index("ix_customer_preferences_updated_at", "customer_preferences", ["updated_at"])
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("category", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("unsubscribe_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("unsubscribe_url")
        batch.drop_column("category")
    op.drop_table("customer_preferences")
