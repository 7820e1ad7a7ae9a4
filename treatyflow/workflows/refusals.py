"""How a workflow's validators refuse: the error types the hub reads a problem code from."""

from __future__ import annotations

from typing import NoReturn

from temporalio.exceptions import ApplicationError

from treatyflow.schemas.limits import LIMIT_REACHED

NOT_ALLOWED = "NotAllowedNow"
# A validator's refusal carrying the problem code the gateway answers with: the type is
# this prefix and the code ("Refused:bad_signature").
REFUSED_AS = "Refused:"
# Art. 7: the only thing missing is the providing authority's consent.
CONSENT_REQUIRED = "ConsentRequired"
# The workflow holds an older key directory than the hub: the hub sends it again with it.
DIRECTORY_OUTDATED = "KeyDirectoryOutdated"

# A lifecycle's problem codes for a message it refuses, as validator error types (any other
# code is ``NOT_ALLOWED``).
ERROR_TYPE_OF_CODE = {
    LIMIT_REACHED: f"{REFUSED_AS}{LIMIT_REACHED}",
    "consent_required": CONSENT_REQUIRED,
}


def refused(problems: list[str], error_type: str) -> NoReturn:
    """A validator's refusal that always raises (``refuse`` with problems)."""
    raise ApplicationError("; ".join(problems), problems, type=error_type, non_retryable=True)


def refuse(problems: list[str], error_type: str = NOT_ALLOWED) -> None:
    """A validator's refusal: every problem, before anything is written to history."""
    if problems:
        refused(problems, error_type)


def unknown_request_reason(treaty_id: str, request_id: str) -> str:
    """The one answer about a request that does not exist, is closed to the asker, or
    has the asker as no party: the same words, so nobody learns which ids are taken."""
    return f"no open request {request_id} under {treaty_id} of which you are a party"
