"""The record's schema revisions, oldest first."""
