"""The amendment procedure's one activity: its change published as the treaty's next
profile version on the date it takes effect (SCO 2010 art. 2.2; ``treatyflow.authorities``).
It writes ``published/``, so the publisher runs it (the gateway, ``workers.publisher``, on
``constants.publisher_queue``); a worker only a change scheduled on its queue before."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from treatyflow.schemas.amendment import ApplyChange
from treatyflow.schemas.published import ProfileRef

# A change the treaty's list no longer allows (added meanwhile, already removed): the
# amendment ends ``amendment_not_applied``, with the reason.
NOT_APPLICABLE = "AmendmentNotApplicable"


class Amendments:
    """Publishes amendments through an ``authorities.Onboarding`` (injected)."""

    def __init__(self, onboarding: object) -> None:
        self._onboarding = onboarding

    @activity.defn(name="apply_amendment")
    async def apply(self, request: ApplyChange) -> ProfileRef:
        """The new version, current at once; published again harmlessly (the same text
        is the same version)."""
        from treatyflow.authorities import AuthorityError, Onboarding

        assert isinstance(self._onboarding, Onboarding)
        onboarding = self._onboarding
        change = request.change
        listed = {a.id for a in onboarding.current(change.treaty)[1].authorities}
        done = {a.change for a in onboarding.registry.book().changes}
        if change in done and ((change.change == "add") == (change.authority_id in listed)):
            return onboarding.current(change.treaty)[0]  # a retry after it was published
        try:
            return await asyncio.to_thread(onboarding.publish, change, request.by)
        except AuthorityError as err:
            raise ApplicationError(str(err), type=NOT_APPLICABLE, non_retryable=True) from err
