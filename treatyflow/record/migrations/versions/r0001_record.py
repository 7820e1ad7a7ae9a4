"""The record's first tables: its entries and the checkpoints the hub signed."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_entries",
        sa.Column("log_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_id", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("procedure", sa.String(200), nullable=False),
        sa.Column("treaty", sa.String(200), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("log_index"),
        sa.UniqueConstraint("entry_id"),
    )
    op.create_index("ix_record_entries_request_id", "record_entries", ["request_id"])
    op.create_table(
        "record_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_record_checkpoints_tree_size", "record_checkpoints", ["tree_size"])


def downgrade() -> None:
    op.drop_index("ix_record_checkpoints_tree_size", "record_checkpoints")
    op.drop_table("record_checkpoints")
    op.drop_index("ix_record_entries_request_id", "record_entries")
    op.drop_table("record_entries")
