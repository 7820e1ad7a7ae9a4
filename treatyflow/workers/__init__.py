"""The deployed processes: Temporal worker, gateway, gate, codec endpoint, dead letters, CLI."""
