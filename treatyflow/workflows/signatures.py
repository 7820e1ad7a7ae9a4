"""The workflow's own signature checks (art. 5.5): nothing is applied that its sender did
not sign, whoever reaches Temporal; the key directory it verifies with, and how a newer
one is taken."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from treatyflow import constants as c
    from treatyflow.agency.signing import (
        KeyRing,
        SignatureError,
        sha256_hex,
        verify,
        verify_directory,
        verify_directory_self_signed,
    )
    from treatyflow.schemas import limits, published
    from treatyflow.schemas.messages import Submission, parse_inbound
    from treatyflow.workflows.common import OperatorAction

from treatyflow.workflows.refusals import DIRECTORY_OUTDATED, REFUSED_AS, refused


class SignatureChecks:
    """The validators' signature checks, over the directory a workflow holds (``Shell``
    sets ``_directory``, ``_keys`` and ``_signed``)."""

    _directory: str | None
    _directory_digest: str | None  # set when the run holds its directory by digest
    _keys: tuple[str, KeyRing, datetime] | None
    _signed: dict[str, str]

    def _held_keys(self) -> tuple[KeyRing, datetime] | None:
        """The held directory's keys and issue time (checked when it was taken); parsed
        once per worker for a directory held by digest, once per run otherwise."""
        text = self._directory
        if text is None:
            return None
        if self._keys is None or self._keys[0] is not text:
            digest = self._directory_digest
            ring, issued = (verify_directory_self_signed(text) if digest is None else
                            published.parsed(digest, KeyRing,
                                             lambda: verify_directory_self_signed(text)))
            self._keys = (text, ring, issued)
        return self._keys[1], self._keys[2]

    def _offered_keys(self, text: str) -> tuple[KeyRing, datetime] | None:
        """A directory the hub sent along, if it is newer than the held one and signed by
        a hub key of it (a run that holds none yet — started before workflows verified —
        takes one that is signed by a hub key it lists). Raises ``SignatureError``."""
        held = self._held_keys()
        if held is None:
            return verify_directory_self_signed(text)
        ring, issued = verify_directory(text, held[0])
        return (ring, issued) if issued > held[1] else None

    def _take_directory(self, text: str | None) -> None:
        """The handler's half: keep a newer directory the validator accepted."""
        if text is None:
            return
        try:
            offered = self._offered_keys(text)
        except SignatureError:
            return
        if offered is not None:
            if self._directory_digest is None:
                self._directory = text
            else:  # a run holding its directory by digest carries the newer one so too
                self._directory_digest = published.digest_of(text)
                self._directory = published.hold_text(self._directory_digest, text)

    def _keys_with(self, text: str | None) -> tuple[KeyRing, datetime] | None:
        """The keys to verify with (validators only): those of ``text``, a directory sent
        along, if it is newer than the held one; else the held ones. A directory no hub
        key of this request signed is refused."""
        held = self._held_keys()
        if text is None:
            return held
        try:
            offered = self._offered_keys(text)
        except SignatureError as err:
            refused([f"the key directory sent along is not signed by a hub key this "
                     f"request knows: {err}"], f"{REFUSED_AS}bad_signature")
        return offered or held

    def _verifying_keys(self, submission: Submission) -> KeyRing:
        """The keys to verify ``submission`` with, or a refusal (validators only)."""
        keys = self._keys_with(submission.directory)
        if keys is None or (submission.directory is None
                            and submission.directory_issued_at is not None
                            and keys[1] < submission.directory_issued_at):
            refused(["this request holds no key directory or an older one than the hub's; "
                     "send the directory along"], DIRECTORY_OUTDATED)
        return keys[0]

    def _check_signed(self, submission: Submission) -> None:
        """Refuse a submission unless its JWS verifies under the sender's key and its
        payload is the message submitted: so only signed messages are ever applied,
        whoever reaches Temporal (the gateway checked the same before; this holds without
        it)."""
        message = submission.message
        keys = self._verifying_keys(submission)
        if submission.jws is None:
            refused([f"message {message.message_id} carries no signature: every message is a "
                    "JWS by its sender's registered key"], f"{REFUSED_AS}unsigned")
        try:
            checked = verify(submission.jws, keys, signer=message.sender)
        except SignatureError as err:
            refused([str(err)], f"{REFUSED_AS}{err.problem}")
        try:
            signed = parse_inbound(checked.payload)
        except ValidationError:
            signed = None
        if signed != message:
            refused([f"message {message.message_id} is not the message its JWS signs"],
                   f"{REFUSED_AS}bad_signature")
        if submission.digest is not None and submission.digest != sha256_hex(checked.payload):
            refused([f"the digest given for message {message.message_id} is not the SHA-256 "
                    "of its signed payload"], f"{REFUSED_AS}bad_signature")
        if message.message_id not in self._signed:
            held = sum(len(token) for token in self._signed.values())
            if held + len(submission.jws) > limits.MAX_SIGNED_BYTES_PER_REQUEST:
                refused([limits.limit_problem(
                    f"at most {limits.MAX_SIGNED_BYTES_PER_REQUEST // 1024} KiB of signed "
                    f"messages per request, the hub's limit; the request holds {held} bytes "
                    f"and this JWS is {len(submission.jws)}")],
                    f"{REFUSED_AS}{limits.LIMIT_REACHED}")

    def _check_operator_signed(self, action: OperatorAction) -> None:
        """Refuse an operator action unless the operators' key signed exactly it."""
        self._check_operators_signed(action, "an operator action", "the operator action")

    def _check_operators_signed(self, action: BaseModel, what: str, this: str) -> None:
        """Refuse ``action`` (with ``signed`` and ``directory``: an operator action, an
        amendment's opening or action) unless the operators' key signed exactly it, its
        JWS verified with the held directory or a newer one sent along. ``what`` and
        ``this`` name it in the refusal."""
        signed_by = getattr(action, "signed", None)
        held = self._keys_with(getattr(action, "directory", None))
        if signed_by is None or held is None:
            refused([f"{what} must be signed with the operators' key "
                    f"({c.OPERATOR_SIGNER})"], f"{REFUSED_AS}unsigned")
        try:
            checked = verify(signed_by, held[0], signer=c.OPERATOR_SIGNER)
            signed = type(action).model_validate_json(checked.payload, strict=True)
        except SignatureError as err:
            refused([str(err)], f"{REFUSED_AS}{err.problem}")
        except ValidationError:
            signed = None
        if signed != action.model_copy(update={"signed": None, "directory": None}):
            refused([f"{this} is not the action its JWS signs"],
                   f"{REFUSED_AS}bad_signature")
