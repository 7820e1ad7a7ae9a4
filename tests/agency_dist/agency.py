"""An agency's program on the ``treatyflow-agency`` distribution alone (run in a venv
holding only that wheel and its dependencies).

``send``: publish a request signed with the agency's key, read the inbox with the client's
default (an ack only when the block ends), and die while holding the first notice about
the request. ``receive``: a new process, as after a restart, gets that notice again,
verified against the hub's key, and acks it. Each step prints a JSON line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path

from treatyflow.agency import AgencyClient, Directory, KeyRing, SigningKey, Unverified
from treatyflow.schemas.messages import parse_inbound


def say(**line: object) -> None:
    print(json.dumps(line), flush=True)


async def main(mode: str) -> None:
    env = os.environ
    say(event="isolated", temporalio=importlib.util.find_spec("temporalio") is not None,
        hub=importlib.util.find_spec("treatyflow.workflows") is not None)
    key = SigningKey.from_pem(env["TF_KID"], Path(env["TF_KEY_FILE"]).read_bytes())
    hub = KeyRing.from_jwks(json.loads(Path(env["TF_HUB_JWKS"]).read_text()))
    directory = Directory.from_signed(Path(env["TF_DIRECTORY"]).read_bytes(), hub)
    request_id = env["TF_REQUEST_ID"]
    async with AgencyClient(env["TF_AUTHORITY"], env["TF_AMQP_URL"], signing_key=key,
                            keys=directory) as client, client.inbox() as inbox:
        if mode == "send":
            sent = await client.publish(parse_inbound(env["TF_REQUEST"].encode()))
            say(event="sent", message_id=sent.message_id, jws=client.last_sent)
        while True:
            async with inbox.next(timeout=60) as message:
                if isinstance(message, Unverified):
                    say(event="unverified", problem=message.problem)
                    continue
                if message.request_id != request_id:
                    continue
                say(event="notice", message_id=message.message_id,
                    notice=getattr(message.body, "event", None), kind=message.kind)
                if mode == "send":
                    os._exit(3)  # a crash while handling it: nothing was acked
                return  # handled: acked as the block ends


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
