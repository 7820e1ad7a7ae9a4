"""Benchmarks: treatyflow measured against bare Temporal (``make bench``)."""
