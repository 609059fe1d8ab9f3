"""Registration and rights values: data resources, the three rights, objections, certificates.

The rights model follows China's "Data Twenty Articles" (2022): three separate rights over a data
resource — resource holding (``holding``), processing & use (``processing_use``) and product operation
(``product_operation``). Registration makes the provider the holder of all three (root rights); the holder
grants the latter two with a scope and transfers holding; every grant points at the right it derives from,
so revoking a right revokes everything derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class RightKind(StrEnum):
    HOLDING = "holding"
    PROCESSING_USE = "processing_use"
    PRODUCT_OPERATION = "product_operation"


class RightStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    TRANSFERRED = "transferred"


class Grade(StrEnum):
    """GB/T 43697-2024 data grades, in increasing order of protection."""

    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"

    @property
    def rank(self) -> int:
        return {"general": 0, "important": 1, "core": 2}[self.value]

    @staticmethod
    def highest(*grades: Grade) -> Grade:
        """ "Take the higher level" across columns and rules."""
        return max(grades, key=lambda g: g.rank)


class ResourceStatus(StrEnum):
    REGISTERED = "registered"
    FROZEN = "frozen"  # an objection is open: no new grants, no trading
    CANCELLED = "cancelled"  # the holder withdrew the registration
    REVOKED = "revoked"  # the operator revoked it (e.g. an objection was upheld)


@dataclass(frozen=True)
class Scope:
    """What a granted right allows: purposes, territory, term and whether it may be sub-licensed.

    ``purposes`` and ``territories`` of ``("*",)`` mean unrestricted (only root rights start that way).
    """

    purposes: tuple[str, ...]
    territories: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime | None
    sublicensable: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "purposes": list(self.purposes),
            "territories": list(self.territories),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "sublicensable": self.sublicensable,
        }


@dataclass(frozen=True)
class Right:
    """One right over a resource, held by a participant, derived from ``parent_id`` (None for roots)."""

    id: str
    resource_id: str
    kind: RightKind
    holder_id: str
    grantor_id: str | None
    parent_id: str | None
    scope: Scope
    public_data_authorisation: bool
    status: RightStatus
    created_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class Classification:
    """Suggested (by the rules), declared (by the provider) and confirmed (by the operator) grades."""

    sector: str
    suggested: Grade
    reasons: tuple[str, ...]
    declared: Grade
    confirmed: Grade | None
    confirmed_by: str | None

    @property
    def effective(self) -> Grade:
        """The confirmed grade, or until confirmation the higher of suggested and declared."""
        return self.confirmed or Grade.highest(self.suggested, self.declared)


@dataclass(frozen=True)
class Resource:
    """A registered data resource as the exchange knows it: metadata, digests and aggregates only."""

    id: str
    provider_id: str
    name: str
    description: str
    tags: tuple[str, ...]
    format: str
    schema: tuple[tuple[str, str], ...]
    row_count: int
    fingerprint: str
    version: int
    profile: dict[str, Any]
    pii: dict[str, Any]
    pii_present: bool
    sensitive_pii: bool
    estimated_individuals: int
    classification: Classification
    public_data: bool
    published: bool
    status: ResourceStatus
    lawful_source: str
    valid_until: datetime
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Objection:
    id: str
    resource_id: str
    objector_id: str
    reason: str
    status: str  # open, upheld, dismissed
    created_at: datetime
    resolved_at: datetime | None
    resolution: str | None


@dataclass(frozen=True)
class TitleLink:
    """One step in a chain of title: a right and the event that made or ended it."""

    right: Right
    depth: int
