"""PSI value objects and the hooks a node implements (docs/PSI.md).

Hooks (``typing.Protocol``):

* :class:`PsiAuthoriser` — binds a session to a contract (``authorise``) and meters it (``record``).
* :class:`PsiDataSource` — opens the set a grant refers to on this node.
* :class:`PeerDirectory` — the Ed25519 public key of a participant.
* ``Release = Callable[[ExactAggregate], ReleasedAggregate]`` — the noise hook (the DP engine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from datavalley.errors import InvalidInput, Unauthenticated
from datavalley.psi.normalise import IdKind, NormalisationReport
from datavalley.psi.suites import EngineProtocol, Suite

__all__ = [
    "Bounds",
    "ExactAggregate",
    "Grant",
    "Mode",
    "PeerDirectory",
    "PsiAuthoriser",
    "PsiDataSource",
    "PsiDataset",
    "PsiOutcome",
    "PsiUsage",
    "Release",
    "ReleasedAggregate",
    "StaticPeers",
]


class Mode(StrEnum):
    """What the receiver (the initiator) learns."""

    CARDINALITY = "cardinality"
    INTERSECTION = "intersection"
    AGGREGATE = "aggregate"


@dataclass(frozen=True)
class Bounds:
    """Clamp bounds of an aggregated column, in integer units (minor units for money)."""

    lower: int
    upper: int

    def __post_init__(self) -> None:
        if self.lower > self.upper:
            raise InvalidInput(f"bounds lower {self.lower} > upper {self.upper}", field="bounds")

    def clamp(self, value: int) -> int:
        return min(max(value, self.lower), self.upper)


@dataclass(frozen=True)
class Grant:
    """What a contract lets one session do, as the local authoriser decided it.

    ``receiver`` is the participant that learns the output (it must be the initiator). ``dataset`` names
    this node's set for :class:`PsiDataSource`; ``columns`` (aggregate mode) are the columns the
    provider allows, with their clamp bounds; ``max_set_size`` bounds the peer's set.
    """

    contract_id: str
    mode: Mode
    receiver: str
    dataset: str = ""
    columns: Mapping[str, Bounds] = field(default_factory=dict)
    max_set_size: int | None = None
    #: What each released value is, in words (``count`` and every column); copied into the release.
    definitions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PsiUsage:
    """One side's metering and ledger record of a session: counts and digests, never IDs."""

    session_id: str
    contract_id: str
    local: str
    peer: str
    role: str  # initiator | responder
    mode: Mode
    suite: Suite | EngineProtocol  # our group, or the SecretFlow engine's protocol
    outcome: str  # completed | expired | failed
    local_set_size: int
    peer_set_size: int | None
    normalisation: NormalisationReport
    result_size: int | None
    bytes_sent: int
    bytes_received: int
    transcript: str  # sha256:<hex> over every message body, in order
    release: str | None  # sha256 of the released aggregate (aggregate mode)
    started_at: datetime
    finished_at: datetime

    def to_dict(self) -> dict[str, object]:
        """The JSON form (integers and strings only, ready for canonical JSON)."""
        return {
            "session_id": self.session_id,
            "contract_id": self.contract_id,
            "local": self.local,
            "peer": self.peer,
            "role": self.role,
            "mode": self.mode.value,
            "suite": self.suite.value,
            "outcome": self.outcome,
            "local_set_size": self.local_set_size,
            "peer_set_size": self.peer_set_size,
            "normalisation": self.normalisation.to_dict(),
            "result_size": self.result_size,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "transcript": self.transcript,
            "release": self.release,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
        }


@dataclass(frozen=True)
class ExactAggregate:
    """What the provider's release hook gets: exact COUNT and clamped SUMs over the intersection."""

    contract_id: str
    session_id: str
    count: int
    sums: Mapping[str, int]
    bounds: Mapping[str, Bounds]
    definitions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReleasedAggregate:
    """What the consumer gets: the noised figures and the name of the mechanism that noised them."""

    count: int
    sums: Mapping[str, int]
    mechanism: str
    #: What was counted and summed, exactly (from the product's terms); empty for a bare release hook.
    definitions: Mapping[str, str] = field(default_factory=dict)

    def average(self, column: str) -> float | None:
        """Released SUM / released COUNT (post-processing); None when the released count is not positive."""
        return self.sums[column] / self.count if self.count > 0 else None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "count": self.count,
            "sums": dict(sorted(self.sums.items())),
            "mechanism": self.mechanism,
        }
        if self.definitions:
            out["definitions"] = dict(sorted(self.definitions.items()))
        return out


Release = Callable[[ExactAggregate], ReleasedAggregate]


@dataclass(frozen=True)
class PsiOutcome:
    """What the initiator learned. ``intersection_file`` (intersection mode) holds one line per match:
    ``<row number>\\t<normalised ID>``, rows in input order (numbered from 0)."""

    session_id: str
    mode: Mode
    cardinality: int
    peer_set_size: int
    usage: PsiUsage
    intersection_file: Path | None = None
    aggregate: ReleasedAggregate | None = None

    def intersection(self) -> list[tuple[int, str]]:
        """The matches as ``(row, normalised ID)`` (reads the whole file: for small results)."""
        if self.intersection_file is None:
            raise InvalidInput(f"session {self.session_id} ran in {self.mode} mode: no intersection")
        out: list[tuple[int, str]] = []
        with self.intersection_file.open(encoding="utf-8") as fh:
            for line in fh:
                row, _, value = line.rstrip("\n").partition("\t")
                out.append((int(row), value))
        return out


class PsiDataset(Protocol):
    """A node's set: IDs of one kind and, for aggregate mode, integer columns. Iterated once or twice."""

    @property
    def id_kind(self) -> IdKind: ...

    @property
    def columns(self) -> tuple[str, ...]: ...

    def records(self, columns: tuple[str, ...]) -> Iterator[tuple[object, tuple[int | None, ...]]]:
        """``(raw ID, values of columns)`` per row, in a stable order."""
        ...


class PsiAuthoriser(Protocol):
    """The contract check and the meter of PSI sessions (wired to the policy engine and the ledger)."""

    def authorise(self, contract_id: str, peer: str, mode: Mode, set_size: int) -> Grant:
        """The grant for a session with ``peer`` under ``contract_id``.

        Raises :class:`~datavalley.errors.PolicyViolation` or :class:`~datavalley.errors.Forbidden`.
        """
        ...

    def record(self, usage: PsiUsage) -> None:
        """Meter the session and put it on the ledger."""
        ...


class PsiDataSource(Protocol):
    """Opens the set a grant names on this node (raises :class:`~datavalley.errors.NotFound`)."""

    def open(self, grant: Grant) -> PsiDataset: ...


class PeerDirectory(Protocol):
    """Participants' Ed25519 public keys (raises :class:`~datavalley.errors.Unauthenticated`)."""

    def public_key(self, participant: str) -> Ed25519PublicKey: ...


class StaticPeers:
    """A fixed :class:`PeerDirectory` (tests, and nodes configured with a peer list)."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    def public_key(self, participant: str) -> Ed25519PublicKey:
        try:
            return self._keys[participant]
        except KeyError:
            raise Unauthenticated(
                f"peer {participant!r} is not a known participant", peer=participant
            ) from None
