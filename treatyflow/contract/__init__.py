"""The published wire contract (docs/contract/), generated from the models and the code."""
