"""Identity values: what the service layer returns and the shells render. No SQL, no HTTP here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    """What a participant, member or token may do. A participant may hold several roles."""

    OPERATOR = "operator"
    PROVIDER = "provider"
    CONSUMER = "consumer"
    AUDITOR = "auditor"
    REGULATOR = "regulator"


ROLES: tuple[Role, ...] = tuple(Role)


class ParticipantKind(StrEnum):
    """The kind of organisation."""

    ENTERPRISE = "enterprise"
    PUBLIC_BODY = "public_body"
    RESEARCH_INSTITUTE = "research_institute"
    INDIVIDUAL_BUSINESS = "individual_business"


class ParticipantStatus(StrEnum):
    """pending -> verified (by the operator) -> suspended (and back to verified by reinstating)."""

    PENDING = "pending"
    VERIFIED = "verified"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class Participant:
    """An organisation on the exchange."""

    id: str
    name: str
    kind: ParticipantKind
    country: str
    registry_id: str
    roles: tuple[Role, ...]
    status: ParticipantStatus
    created_at: datetime
    verified_at: datetime | None


@dataclass(frozen=True)
class Member:
    """A person or service account acting for a participant."""

    id: str
    participant_id: str
    name: str
    kind: str
    roles: tuple[Role, ...]
    admin: bool
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class ApiToken:
    """A token's metadata; the secret is never stored, only its SHA-256."""

    id: str
    member_id: str
    scopes: tuple[Role, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    description: str


@dataclass(frozen=True)
class IssuedToken:
    """A newly issued token: the only moment the secret exists outside the caller's hands."""

    token: ApiToken
    secret: str


@dataclass(frozen=True)
class ParticipantKey:
    """A participant's registered Ed25519 public key."""

    id: str
    participant_id: str
    public_key: str  # base64 of the 32 raw bytes
    fingerprint: str  # sha256:<hex> of the raw key
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who is calling: the member behind a token and the roles that token carries.

    ``roles`` is the intersection of the token's scopes and the member's roles, so a token never grants
    more than its member holds. The exchange itself acts as ``Principal.system()`` (init, sequencer).
    """

    member_id: str | None
    participant_id: str | None
    roles: frozenset[Role]
    admin: bool = False
    token_id: str | None = None
    participant_verified: bool = False

    @staticmethod
    def system() -> Principal:
        """The exchange itself, for bootstrap work done by ``datavalley init``."""
        return Principal(None, None, frozenset(ROLES), admin=True, participant_verified=True)

    @property
    def is_system(self) -> bool:
        return self.member_id is None

    def has(self, *roles: Role) -> bool:
        """True if the principal holds any of ``roles``."""
        return any(r in self.roles for r in roles)
