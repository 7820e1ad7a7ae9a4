"""The small client an agency uses: connect, sign, publish envelopes, consume its inbox
and verify the hub's signatures.

Installable on its own with the models of ``treatyflow.schemas`` and ``cryptography``; it
knows only the published contract (exchange names, envelope, signatures), never Temporal.
"""

from treatyflow.agency.client import AgencyClient, Inbox, Unverified, read_delivery, to_amqp
from treatyflow.agency.signing import (
    BadSignature,
    KeyRing,
    KeySource,
    PublicKey,
    SignatureError,
    SigningKey,
    UnknownKey,
    Unsigned,
    canonical,
    sign,
    verify,
)

__all__ = [
    "AgencyClient",
    "BadSignature",
    "Inbox",
    "KeyRing",
    "KeySource",
    "PublicKey",
    "SignatureError",
    "SigningKey",
    "UnknownKey",
    "Unsigned",
    "Unverified",
    "canonical",
    "read_delivery",
    "sign",
    "to_amqp",
    "verify",
]
