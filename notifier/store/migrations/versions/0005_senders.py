"""who each notification comes from: its store's sender and reply-to

Revision ID: 0005
Revises: 0004

With a stores file (NOTIFIER_STORES_FILE), a message comes from its store: the email's
From and Reply-To, the SMS sender. They are decided when the message is rendered (the
header and footer of its body name the same store) and kept on its ledger row, so what
the channel sends is what the ledger says, even if the stores file changes before it
goes out. NULL: the channel's own sender, as before.
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("sender", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reply_to", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("reply_to")
        batch.drop_column("sender")
