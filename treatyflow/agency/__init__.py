"""The small client an agency uses: connect, sign envelopes as JWS, publish them, consume
its inbox, verify the hub's signatures and the original senders' (art. 5.5), and follow
the key directory.

It knows only the published contract (exchange names, envelope, JWS, JWKS), never
Temporal. Its names are those of its three modules: ``signing`` (JWS and the key
directory, without aio-pika), ``wire`` (envelopes as AMQP messages and back, which the hub
uses too) and ``client`` (the connection, the inbox, the directory it follows). Four more
check the hub's record as a party does: ``entries`` (an entry's leaf), ``merkle`` (RFC
9162 proofs), ``checkpoints`` (the hub's signed tree heads) and ``receipts`` (the hub's
receipts of what the party sent, which the client verifies and keeps); ``witness`` keeps
the last checkpoint the inbox brought and checks each next one against it (the client
runs it).
"""

from treatyflow.agency import signing, wire
from treatyflow.agency.client import AgencyClient, Directory, Inbox
from treatyflow.agency.signing import *  # noqa: F403
from treatyflow.agency.wire import *  # noqa: F403
from treatyflow.agency.witness import Fork, Witness

__all__ = ["AgencyClient", "Directory", "Fork", "Inbox", "Witness"]
__all__ += signing.__all__
__all__ += wire.__all__
