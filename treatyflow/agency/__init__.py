"""The small client an agency uses: connect, sign envelopes as JWS, publish them, consume
its inbox, verify the hub's signatures and the original senders' (art. 5.5), and follow
the key directory.

It knows only the published contract (exchange names, envelope, JWS, JWKS), never
Temporal.
"""

from treatyflow.agency.client import (
    AgencyClient,
    Directory,
    Inbox,
    Unverified,
    originals,
    read_delivery,
    read_original,
    to_amqp,
)
from treatyflow.agency.signing import (
    BadSignature,
    KeyRing,
    KeySource,
    Malformed,
    PublicKey,
    SignatureError,
    SigningKey,
    UnknownKey,
    Unsigned,
    Verified,
    sign,
    sign_directory,
    verify,
    verify_directory,
)

__all__ = [
    "AgencyClient",
    "BadSignature",
    "Directory",
    "Inbox",
    "KeyRing",
    "KeySource",
    "Malformed",
    "PublicKey",
    "SignatureError",
    "SigningKey",
    "UnknownKey",
    "Unsigned",
    "Unverified",
    "Verified",
    "originals",
    "read_delivery",
    "read_original",
    "sign",
    "sign_directory",
    "to_amqp",
    "verify",
    "verify_directory",
]
