"""in-app feed items

Revision ID: 0006
Revises: 0005

One row per notification on the in-app channel, kept for the customer's feed: ``seq``
orders it (cursors and stream resumption), ``id`` is the notification's id so a
redelivered dispatch never makes a second item.
"""

from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_items",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("template", sa.String(length=100), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_feed_items_created_at", "feed_items", ["created_at"])
    op.create_index("ix_feed_items_customer_seq", "feed_items", ["customer_id", "seq"])


def downgrade() -> None:
    op.drop_table("feed_items")
