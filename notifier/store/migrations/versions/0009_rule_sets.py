"""rule sets changed through the API

Revision ID: 0009
Revises: 0008

Every rules document stored by ``PUT /v1/rules``, one row per version; the newest is
the one in effect (the rules file is version 0, used while the table is empty). Rows
are never updated or deleted: the table is the history a rollback picks from.
"""

from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_sets",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )


def downgrade() -> None:
    op.drop_table("rule_sets")
