"""The record's Alembic environment and revisions (applied by treatyflow.record.store on open)."""
