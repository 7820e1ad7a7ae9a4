"""The record's tables as SQLAlchemy 2 models (created by the Alembic revisions in migrations/)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class EntryRow(Base):
    """One entry; ``log_index`` is its leaf in the Merkle log. ``sealed`` is the entry's
    JWS encrypted with the payload keys (treatyflow.codec): no body in clear at rest."""

    __tablename__ = "record_entries"

    log_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry_id: Mapped[str] = mapped_column(String(200), unique=True)
    request_id: Mapped[str] = mapped_column(String(200), index=True)
    procedure: Mapped[str] = mapped_column(String(200))
    treaty: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class CheckpointRow(Base):
    """A checkpoint the hub signed: (tree size, root hash, time) and its JWS."""

    __tablename__ = "record_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(32))
    jws: Mapped[str] = mapped_column(Text)


class ReceiptsSentRow(Base):
    """How far the hub's receipts went: every entry below ``tree_size`` had its receipts
    published (and confirmed by the broker). One row, ``name`` 'receipts'."""

    __tablename__ = "record_receipts_sent"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger)
