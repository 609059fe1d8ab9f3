"""Identity: participants (organisations), members, roles, API tokens and Ed25519 keys."""

from datavalley.identity.model import (
    ROLES,
    ApiToken,
    IssuedToken,
    Member,
    Participant,
    ParticipantKey,
    ParticipantKind,
    ParticipantStatus,
    Principal,
    Role,
)

__all__ = [
    "ROLES",
    "ApiToken",
    "IssuedToken",
    "Member",
    "Participant",
    "ParticipantKey",
    "ParticipantKind",
    "ParticipantStatus",
    "Principal",
    "Role",
]
