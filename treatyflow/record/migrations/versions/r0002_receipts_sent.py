"""How far the hub's receipts went (treatyflow.workers.receipts): one row, the tree size
below which every entry's receipts were published."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_receipts_sent",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("record_receipts_sent")
