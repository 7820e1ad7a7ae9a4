"""Simulated authorities: the parties' agencies played over AMQP for the demo, tests and benches."""
