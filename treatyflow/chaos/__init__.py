"""Fault injection against the local stack: ``python -m treatyflow.chaos``."""
