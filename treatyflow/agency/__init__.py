"""The small client an agency uses: connect, publish envelopes, consume its inbox.

Installable on its own with the models of ``treatyflow.schemas``; it knows only the
published contract (exchange names, envelope), never Temporal.
"""

from treatyflow.agency.client import AgencyClient, Inbox, to_amqp

__all__ = ["AgencyClient", "Inbox", "to_amqp"]
