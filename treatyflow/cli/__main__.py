"""``python -m treatyflow.cli``: the ``treatyflow`` command."""

from treatyflow.cli import entry

entry()
