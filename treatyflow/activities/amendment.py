"""The amendment procedure's one activity: its change published as the treaty's next
profile version on the date it takes effect (SCO 2010 art. 2.2; ``treatyflow.authorities``).
It writes ``published/``, so the publisher runs it (the gateway, ``workers.publisher``, on
``constants.publisher_queue``); a worker only a change scheduled on its queue before."""

from __future__ import annotations

import asyncio

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from treatyflow import constants as c
from treatyflow.agency.signing import KeySource, SignatureError, verify
from treatyflow.schemas.amendment import AmendmentInput, ApplyChange
from treatyflow.schemas.published import ProfileRef

# A change the treaty's list no longer allows (added meanwhile, already removed): the
# amendment ends ``amendment_not_applied``, with the reason.
NOT_APPLICABLE = "AmendmentNotApplicable"


class Amendments:
    """Publishes amendments through an ``authorities.Onboarding`` (injected), each one's
    opening checked against ``keys`` (the hub's registry) first where it is given."""

    def __init__(self, onboarding: object, keys: KeySource | None = None) -> None:
        self._onboarding = onboarding
        self._keys = keys

    def _check_opening(self, request: ApplyChange) -> None:
        """Publish nothing the operators' key, as the hub registers it, did not open: the
        workflow verified the opening with the directory it was started with, which whoever
        reached Temporal could have chosen (art. 14: the depositary's part is the
        operators'). An opening from before signing (no JWS) is taken as it ran."""
        if self._keys is None or request.signed is None:
            return
        try:
            checked = verify(request.signed, self._keys, signer=c.OPERATOR_SIGNER)
            opening = AmendmentInput.model_validate_json(checked.payload)
        except (SignatureError, ValidationError) as err:
            raise ApplicationError(f"the amendment's opening is not signed by an operators' "
                                   f"key registered here: {err}", type=NOT_APPLICABLE,
                                   non_retryable=True) from err
        if opening.notification.change != request.change:
            raise ApplicationError("the change to publish is not the one the operators "
                                   "signed", type=NOT_APPLICABLE, non_retryable=True)

    @activity.defn(name="apply_amendment")
    async def apply(self, request: ApplyChange) -> ProfileRef:
        """The new version, current at once; published again harmlessly (the same text
        is the same version)."""
        from treatyflow.authorities import AuthorityError, Onboarding

        assert isinstance(self._onboarding, Onboarding)
        onboarding = self._onboarding
        self._check_opening(request)
        change = request.change
        listed = {a.id for a in onboarding.current(change.treaty)[1].authorities}
        done = {a.change for a in onboarding.registry.book().changes}
        if change in done and ((change.change == "add") == (change.authority_id in listed)):
            return onboarding.current(change.treaty)[0]  # a retry after it was published
        try:
            return await asyncio.to_thread(onboarding.publish, change, request.by)
        except AuthorityError as err:
            raise ApplicationError(str(err), type=NOT_APPLICABLE, non_retryable=True) from err
