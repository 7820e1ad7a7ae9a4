"""The hostile-input catalogue and its runner (make security-check)."""
