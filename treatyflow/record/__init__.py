"""The hub's own record: a tamper-evident Merkle log of entries, checkpoints, evidence."""

from treatyflow.agency.entries import ENTRY_KINDS, Entry, NewEntry, entry_id, record_time
from treatyflow.record.checkpoints import (
    Checkpoint,
    SignedCheckpoint,
    checkpoint_every,
    read_checkpoint,
    sign_checkpoint,
)
from treatyflow.record.store import EntryConflict, Record, RecordCorrupt, RecordError

__all__ = [
    "ENTRY_KINDS",
    "Checkpoint",
    "Entry",
    "EntryConflict",
    "NewEntry",
    "Record",
    "RecordCorrupt",
    "RecordError",
    "SignedCheckpoint",
    "checkpoint_every",
    "entry_id",
    "read_checkpoint",
    "record_time",
    "sign_checkpoint",
]
