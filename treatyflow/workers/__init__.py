"""The processes: Temporal worker, gateway, simulated authorities, local stack, CLI."""
