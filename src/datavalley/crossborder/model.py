"""Cross-border values: what the engine decides on and returns, and the records the exchange keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Pathway(StrEnum):
    """The outcome of a transfer decision."""

    NOT_CROSS_BORDER = "not_cross_border"  # origin and recipient in the same jurisdiction
    NON_PERSONAL = "non_personal"  # no personal information and no important data (incl. anonymised)
    EXEMPT = "exempt"  # an exemption of CAC 2024 arts. 3-6 applies (``Decision.exemption`` names it)
    STANDARD_CONTRACT = "standard_contract"  # CAC 2024 art. 8: a filed standard contract or certification
    SECURITY_ASSESSMENT = "security_assessment"  # CAC 2024 art. 7: an approved CAC security assessment
    FORBIDDEN = "forbidden"  # no pathway (core data)
    GDPR_ADEQUACY = "gdpr_adequacy"  # GDPR art. 45
    GDPR_SCC = "gdpr_scc"  # GDPR art. 46(2)(c) with SCC 2021/914 + transfer impact assessment
    UNREGULATED = "unregulated"  # no encoded regime governs the origin jurisdiction


class RecordKind(StrEnum):
    """Records an exporter files (and the exchange checks before data moves)."""

    SECURITY_ASSESSMENT = "security_assessment"  # CAC approval: number, scope, validity (3 years)
    STANDARD_CONTRACT = "standard_contract"  # the filed standard contract: filing number, recipient
    CERTIFICATION = "certification"  # PI protection certification: certificate number, validity
    CONSENT = "consent"  # evidence of separate consent (PIPL arts. 29, 39) for a resource
    BASIS = "basis"  # the exporter's claim of an exemption basis for a contract (CAC 2024 arts. 3-5)
    SCC = "scc"  # GDPR SCC 2021/914 signed for a contract
    TIA = "tia"  # GDPR transfer impact assessment


BASES = (
    "trade",
    "transport",
    "academic",
    "manufacturing",
    "marketing",
    "reexport",
    "contract_necessity",
    "hr",
    "emergency",
)
ART3_BASES = frozenset({"trade", "transport", "academic", "manufacturing", "marketing"})
GDPR_ROLES = ("controller", "processor")


@dataclass(frozen=True)
class Proposal:
    """A proposed transfer, as the engine sees it (every field a measured fact or a filed record).

    ``individuals_ub`` / ``sensitive_ub`` are the exporter's cumulative distinct individuals this calendar
    year *including this transfer*, as upper confidence bounds of the HLL sketches.
    """

    origin: str
    recipient: str
    personal: bool = False
    sensitive: bool = False
    important: bool = False
    core: bool = False
    anonymised: bool = False
    sector: str = ""
    categories: frozenset[str] = frozenset()
    ciio: bool = False
    ftz_zone: str | None = None
    bases: frozenset[str] = frozenset()
    individuals_ub: int = 0
    sensitive_ub: int = 0
    exporter_role: str = "controller"
    importer_role: str = "controller"
    on: str = ""  # the transfer date (ISO), for dated rules such as adequacy decisions


@dataclass(frozen=True)
class Decision:
    """The engine's answer: the pathway, the articles that decided it, and what must be on file."""

    regime: str  # cn | gdpr | none
    cross_border: bool
    pathway: Pathway
    exemption: str | None
    articles: tuple[str, ...]
    requires: tuple[tuple[str, ...], ...]  # each inner tuple: one of these record kinds must be on file
    duties: tuple[str, ...]  # obligations that hold on every pathway (notice, PIPIA …), with articles
    reasons: tuple[str, ...]
    counts: bool  # whether the transfer adds to the exporter's annual counters
    scc_module: str | None = None
    rules_version: str = ""

    @property
    def allowed_without_records(self) -> bool:
        return self.pathway != Pathway.FORBIDDEN and not self.requires

    def to_json(self) -> dict[str, Any]:
        return {
            "regime": self.regime,
            "cross_border": self.cross_border,
            "pathway": self.pathway.value,
            "exemption": self.exemption,
            "articles": list(self.articles),
            "requires": [list(r) for r in self.requires],
            "duties": list(self.duties),
            "reasons": list(self.reasons),
            "counts": self.counts,
            "scc_module": self.scc_module,
            "rules_version": self.rules_version,
        }


@dataclass(frozen=True)
class Facts:
    """A participant's cross-border facts (jurisdiction from its verified registration)."""

    participant_id: str
    jurisdiction: str
    ciio: bool
    ftz_zone: str | None
    gdpr_role: str
    attested_by: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class NodeLocation:
    id: str
    participant_id: str
    jurisdiction: str
    site: str
    evidence_digest: str
    attested_by: str | None
    created_at: datetime


@dataclass(frozen=True)
class TransferRecord:
    id: str
    kind: str
    exporter_id: str
    recipient_id: str | None
    contract_id: str | None
    resource_id: str | None
    number: str | None
    scope: dict[str, Any]
    valid_from: datetime
    valid_until: datetime | None
    evidence_digest: str
    status: str
    recorded_by: str | None
    created_at: datetime


@dataclass(frozen=True)
class Transfer:
    """One decided transfer in the regulator's register."""

    id: str
    stage: str
    contract_id: str | None
    exporter_id: str
    recipient_id: str
    origin: str
    destination: str
    pathway: str
    exemption: str | None
    allowed: bool
    personal: bool
    non_personal_reason: str | None
    articles: tuple[str, ...]
    missing: tuple[tuple[str, ...], ...]
    records: tuple[str, ...]
    year: int
    individuals_ub: int
    sensitive_ub: int
    created_at: datetime


@dataclass(frozen=True)
class Counter:
    exporter_id: str
    year: int
    kind: str  # pi | sensitive
    estimate: float
    upper_bound: int
    lg_k: int
    updated_at: datetime


@dataclass(frozen=True)
class SketchInfo:
    resource_id: str
    fingerprint: str
    kind: str
    estimate: float
    upper_bound: int
    created_at: datetime


@dataclass(frozen=True)
class Refusal:
    """Why a transfer may not happen yet: the pathway and what to file."""

    decision: Decision
    missing: tuple[tuple[str, ...], ...]
    details: dict[str, Any] = field(default_factory=dict)
