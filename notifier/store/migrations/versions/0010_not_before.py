"""quiet hours: a notification held until the customer's morning

Revision ID: 0010
Revises: 0009

``not_before``: a ``normal``/``low`` SMS or push planned in the customer's quiet hours
stays ``queued`` with this set to the end of the window; the outbox publishes it and a
dispatcher claims it only from then. NULL: due at once, as before.
"""

from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("not_before")
