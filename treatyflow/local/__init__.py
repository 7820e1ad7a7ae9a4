"""The embedded local stack: its supervisor, the scenario demo and the browser check of the UI."""
