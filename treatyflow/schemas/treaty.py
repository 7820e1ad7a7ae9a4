"""Treaty profiles: the parties, their competent authorities and the procedure's rules, as data.

A new treaty of the same procedure type needs a profile file in ``treaties/``, not code;
or, without a release, in the folder ``TREATYFLOW_TREATIES_DIR`` names (``use_folder``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from enum import StrEnum
from functools import _lru_cache_wrapper, cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

AUTHORITY_ID_PATTERN = r"^[A-Z]{2}-[A-Z0-9]{2,12}$"
# The procedure this module's profile carries; each other procedure has its own model
# (``transfer.profile.TransferProfile`` for "transfer-of-convicted-person").
PROCEDURE = "request-for-assistance"


class ClockRule(StrEnum):
    """What the execution clock does while the request waits on something."""

    RUNS = "runs"
    PAUSED = "paused"


class Authority(BaseModel):
    """A competent authority of one party (SCO 2010 art. 2; annex for Kazakhstan)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=AUTHORITY_ID_PATTERN, description="Code: ISO country + short name.")
    state: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 of its state.")
    name: str
    source: str = Field(description="Where the designation comes from.")


class Ground(BaseModel):
    """A ground on which execution may be deferred or refused, with its article."""

    model_config = ConfigDict(frozen=True)

    code: str
    article: str
    text: str
    allows_deferral: bool = True


class Deadlines(BaseModel):
    """Treaty durations, in treaty time (scaled by the workflow's time scale)."""

    model_config = ConfigDict(frozen=True)

    execution_days: int = Field(30, description="Art. 6.1: as a rule within 30 days of receipt.")
    oral_confirmation_hours: int = Field(
        72, description="Art. 5.2: an oral request is confirmed in writing within 72 hours."
    )
    reminder_days_before: tuple[int, ...] = Field(
        (7, 1), description="Reminders go to both sides this many days before the deadline."
    )
    receipt_deemed_after_days: int | None = Field(
        5,
        description="Hub policy, not treaty text: a requested authority that has not "
        "acknowledged receipt this many days after delivery is taken to have received the "
        "request on delivery, so the art. 6.1 clock runs (None: wait for the acknowledgement).",
    )
    clock_during_clarification: ClockRule = ClockRule.PAUSED
    clock_during_deferral: ClockRule = ClockRule.PAUSED
    consent_window_days: int | None = Field(
        None, ge=1,
        description="Hub policy, not treaty text: after the results are provided the request "
        "stays open this many days after its last consent message, so that consent to other "
        "use or to a transfer (art. 7.2, 7.3) is asked, given and relied on through the hub "
        "(None: the request closes at execution).",
    )


class TreatyProfile(BaseModel):
    """One treaty as the hub applies it."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z0-9-]{3,40}$")
    title: str
    procedure: str = Field(description="The workflow type that carries it.")
    entry_into_force: date
    termination_notice_date: date | None = None
    working_languages: tuple[str, ...] = Field(description="Art. 11: ISO 639-1 codes.")
    parties: tuple[str, ...]
    authorities: tuple[Authority, ...]
    deadlines: Deadlines = Deadlines()
    refusal_grounds: tuple[Ground, ...]
    forms_of_cooperation: tuple[str, ...]
    crime_categories: tuple[str, ...]
    signatory_positions: tuple[str, ...] = Field(
        ("head", "deputy"), description="Art. 5.5: who may sign a written request."
    )

    def authority(self, authority_id: str) -> Authority | None:
        return next((a for a in self.authorities if a.id == authority_id), None)

    def ground(self, code: str) -> Ground | None:
        return next((g for g in self.refusal_grounds if g.code == code), None)


class ProfileHeader(BaseModel):
    """What every profile has, whatever its procedure: enough for the authority registry
    and to choose the workflow that carries it."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z0-9-]{3,40}$")
    procedure: str
    parties: tuple[str, ...]
    authorities: tuple[Authority, ...]


_folders: list[Traversable] = [resources.files("treatyflow.schemas") / "treaties"]
_caches: list[_lru_cache_wrapper[Any]] = []
F = TypeVar("F", bound=Callable[..., Any])


def profile_cache(read: F) -> F:
    """``functools.cache`` for what is read from the profile files, emptied by
    ``use_folder`` (in this module and in each procedure's own, e.g. ``transfer``)."""
    cached = cache(read)
    _caches.append(cached)
    return cached  # type: ignore[return-value]


def use_folder(folder: Path | None) -> None:
    """Read profiles from ``folder`` too (``Settings.treaties_dir``), once per process
    before any profile is read; ``None`` leaves the shipped profiles only. A profile there
    may not reuse a shipped treaty's id."""
    del _folders[1:]
    if folder is not None:
        if not folder.is_dir():
            raise FileNotFoundError(f"TREATYFLOW_TREATIES_DIR {folder} is not a folder")
        clash = {p.name for p in folder.glob("*.json")} & {
            p.name for p in _folders[0].iterdir()}
        if clash:
            raise ValueError(f"{folder} has profiles of shipped treaties: {sorted(clash)}")
        _folders.append(folder)
    for cached in _caches:
        cached.cache_clear()


def profile_text(treaty_id: str) -> str:
    """The JSON of ``<treaty_id>.json``, shipped or from the extra folder (KeyError if none)."""
    name = f"{treaty_id}.json"
    if treaty_id.replace("-", "").isalnum():
        for folder in _folders:
            if (folder / name).is_file():
                return (folder / name).read_text(encoding="utf-8")
    raise KeyError(f"unknown treaty {treaty_id!r}")


@profile_cache
def load_header(treaty_id: str) -> ProfileHeader:
    """The header of the profile shipped in ``treaties/<treaty_id>.json`` (any procedure)."""
    return ProfileHeader.model_validate_json(profile_text(treaty_id))


@profile_cache
def load_profile(treaty_id: str) -> TreatyProfile:
    """The request-for-assistance profile shipped in ``treaties/<treaty_id>.json``; a
    profile of another procedure is a KeyError here (load it with its own model)."""
    if load_header(treaty_id).procedure != PROCEDURE:
        raise KeyError(f"treaty {treaty_id!r} is not a {PROCEDURE} treaty")
    return TreatyProfile.model_validate_json(profile_text(treaty_id))


def known_treaties() -> list[str]:
    names = (p.name for folder in _folders for p in folder.iterdir())
    return sorted(n.removesuffix(".json") for n in names if n.endswith(".json"))


@profile_cache
def all_authorities() -> dict[str, Authority]:
    """Every authority of every shipped treaty, by id (the broker's user registry)."""
    found: dict[str, Authority] = {}
    for treaty_id in known_treaties():
        for authority in load_header(treaty_id).authorities:
            found[authority.id] = authority
    return found
