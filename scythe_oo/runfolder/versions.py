"""Versions of an experiment's runs: SemVer, the bump policies, and the next version to use.

Run folders are grouped by version (``<experiment>/v1.2.0/<timestamp>``) so that results can be
compared and published version by version, as in the seed tool.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

import attrs

from scythe_oo.definition.checks import VERSION_POLICIES

if TYPE_CHECKING:
    from scythe_oo.storage.base import ArtifactStore

_SEMVER = re.compile(r"^v?(\d{1,9})\.(\d{1,9})\.(\d{1,9})$")
MAX_PART = 999_999_999
"""The largest major, minor or patch number: nine digits keep folder names short."""


def _part(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PART:
        raise ValueError(
            f"SemVer.{attribute.name} must be an int from 0 to {MAX_PART}, got {value!r}"
        )


@functools.total_ordering
@attrs.frozen(order=False)
class SemVer:
    """A run's version: major.minor.patch, written ``v1.2.3`` in folder names."""

    major: int = attrs.field(validator=_part)
    minor: int = attrs.field(validator=_part)
    patch: int = attrs.field(validator=_part)

    @classmethod
    def parse(cls, text: str) -> SemVer:
        match = _SEMVER.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise ValueError(
                f"version {text!r:.80} is not of the form v1.2.3 (at most nine digits each)"
            )
        return cls(*(int(g) for g in match.groups()))

    @classmethod
    def is_version(cls, text: str) -> bool:
        return bool(_SEMVER.match(text)) and text.startswith("v")

    def bump(self, policy: str) -> SemVer:
        if policy == "bumpmajor":
            return SemVer(self.major + 1, 0, 0)
        if policy == "bumpminor":
            return SemVer(self.major, self.minor + 1, 0)
        if policy == "bumppatch":
            return SemVer(self.major, self.minor, self.patch + 1)
        if policy == "keep":
            return self
        raise ValueError(f"version policy {policy!r} is not one of {', '.join(VERSION_POLICIES)}")

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"


FIRST_VERSION = SemVer(1, 0, 0)


def existing_versions(store: ArtifactStore, experiment: str) -> list[SemVer]:
    """Versions already in the store, ignoring folders that are not ``vX.Y.Z``."""
    return sorted(SemVer.parse(d) for d in store.list_dirs(experiment) if SemVer.is_version(d))


def resolve_version(
    store: ArtifactStore, experiment: str, requested: str | SemVer | None, policy: str
) -> SemVer:
    """An explicit version wins; otherwise apply the policy to the newest stored version.

    The first run of an experiment is v1.0.0 whatever the policy.
    """
    if isinstance(requested, SemVer):
        return requested
    if requested is not None and not isinstance(requested, str):
        raise ValueError(
            f"version must be a SemVer, a string like 'v1.2.3' or a policy name, got "
            f"{requested!r:.80}"
        )
    if requested is not None and _SEMVER.match(requested.strip()):
        return SemVer.parse(requested)
    if requested is not None and requested not in VERSION_POLICIES:
        raise ValueError(
            f"version {requested!r:.80} is neither a version like 'v1.2.3' nor one of the "
            f"policies {', '.join(VERSION_POLICIES)}"
        )
    policy = requested or policy
    versions = existing_versions(store, experiment)
    if not versions:
        SemVer(0, 0, 0).bump(policy)  # validates the policy name even on a first run
        return FIRST_VERSION
    return versions[-1].bump(policy)
