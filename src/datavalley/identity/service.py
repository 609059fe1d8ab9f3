"""Identity use cases: one function per use case, each checking authorisation itself.

Rules (least privilege):
- The operator registers, verifies, suspends and reinstates participants.
- A participant's admin members manage that participant's members, tokens and keys; any member may
  issue and revoke its own tokens. The operator may issue a token for a participant's admin member
  (onboarding), never for other members.
- A token carries at most its member's roles; a member at most its participant's roles; only the
  exchange's own participant may hold the operator role.
- Suspending a participant stops every one of its tokens at once.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session
from stdnum.cn import uscc
from stdnum.exceptions import ValidationError

from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from datavalley.exchange import Context, token_digest
from datavalley.identity.model import (
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
from datavalley.identity.tables import KeyRow, MemberRow, ParticipantRow, TokenRow
from datavalley.keys import decode_public_key, fingerprint, registration_message
from datavalley.store.base import new_id
from datavalley.store.pages import Page, paginate

TOKEN_PREFIX = "dvt_"  # noqa: S105 - a public prefix, not a secret
_FOREIGN_REGISTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ./-]{0,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


# --- conversions -------------------------------------------------------------------------------


def _participant(r: ParticipantRow) -> Participant:
    return Participant(
        r.id,
        r.name,
        ParticipantKind(r.kind),
        r.country,
        r.registry_id,
        tuple(Role(x) for x in r.roles),
        ParticipantStatus(r.status),
        r.created_at,
        r.verified_at,
    )


def _member(r: MemberRow) -> Member:
    return Member(
        r.id,
        r.participant_id,
        r.name,
        r.kind,
        tuple(Role(x) for x in r.roles),
        r.admin,
        r.active,
        r.created_at,
    )


def _token(r: TokenRow) -> ApiToken:
    return ApiToken(
        r.id,
        r.member_id,
        tuple(Role(x) for x in r.scopes),
        r.created_at,
        r.expires_at,
        r.revoked_at,
        r.description,
    )


def _key(r: KeyRow) -> ParticipantKey:
    return ParticipantKey(r.id, r.participant_id, r.public_key, r.fingerprint, r.created_at, r.revoked_at)


# --- validation ---------------------------------------------------------------------------------


def _roles(values: list[str] | tuple[str, ...], field: str) -> tuple[Role, ...]:
    out: list[Role] = []
    for v in values:
        try:
            role = Role(v)
        except ValueError:
            allowed = ", ".join(r.value for r in Role)
            raise InvalidInput(f"unknown role {v!r} in {field} (allowed: {allowed})", field=field) from None
        if role not in out:
            out.append(role)
    if not out:
        raise InvalidInput(f"{field} must name at least one role", field=field)
    return tuple(out)


def _name(value: str, field: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 200:
        raise InvalidInput(f"{field} must be 1 to 200 characters", field=field)
    return value


def normalise_registry_id(country: str, registry_id: str) -> tuple[str, str]:
    """Validate an organisation's registry identifier and return (country, canonical id).

    A Chinese organisation (country ``CN``) must give its 18-character unified social credit code, whose
    check character is verified (GB 32100-2015, python-stdnum ``cn.uscc``). Others give an ISO 3166 alpha-2
    country code and their registry number. Raises :class:`InvalidInput` naming what is wrong.
    """
    country = country.strip().upper()
    if not _COUNTRY.match(country):
        raise InvalidInput(f"country must be an ISO 3166-1 alpha-2 code, got {country!r}", field="country")
    if country == "CN":
        try:
            return country, uscc.validate(registry_id)
        except ValidationError as exc:
            raise InvalidInput(
                f"registry_id {registry_id!r} is not a valid unified social credit code: {exc}",
                field="registry_id",
            ) from exc
    registry_id = registry_id.strip()
    if not _FOREIGN_REGISTRY.match(registry_id):
        raise InvalidInput(
            "registry_id must be 1 to 64 letters, digits, spaces or . / - characters", field="registry_id"
        )
    return country, registry_id


# --- lookups with visibility ------------------------------------------------------------------


def _oversees(p: Principal) -> bool:
    return p.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR)


def _get_participant_row(ctx: Context, participant_id: str) -> ParticipantRow:
    row = ctx.session.get(ParticipantRow, participant_id)
    visible = row is not None and (
        _oversees(ctx.principal) or row.id == ctx.principal.participant_id or row.status == "verified"
    )
    if row is None or not visible:
        raise NotFound(f"participant {participant_id} does not exist", participant_id=participant_id)
    return row


def _get_member_row(ctx: Context, member_id: str) -> MemberRow:
    row = ctx.session.get(MemberRow, member_id)
    if row is None or not (_oversees(ctx.principal) or row.participant_id == ctx.principal.participant_id):
        raise NotFound(f"member {member_id} does not exist", member_id=member_id)
    return row


def _no_escalation(ctx: Context, roles: tuple[Role, ...], action: str) -> None:
    """A token cannot hand out roles it does not hold itself (least privilege per token scope)."""
    p = ctx.principal
    if p.is_system:
        return
    extra = sorted(r.value for r in roles if r not in p.roles)
    if extra:
        raise Forbidden(
            f"{action} with role(s) {', '.join(extra)} needs a token that holds them",
            action=action,
            roles=extra,
        )


def _require_admin_of(ctx: Context, participant_id: str, action: str) -> None:
    p = ctx.principal
    if p.is_system:
        return
    if p.participant_id == participant_id and p.admin:
        return
    raise Forbidden(f"{action} needs an admin member of participant {participant_id}", action=action)


# --- authentication --------------------------------------------------------------------------


def authenticate(session: Session, secret: str | None, now: datetime) -> Principal:
    """Resolve a bearer token to a principal.

    Raises :class:`Unauthenticated` for a missing, malformed, unknown, expired or revoked token, an
    inactive member or a suspended participant (each with its own message).
    """
    if not secret:
        raise Unauthenticated("no API token given (send 'Authorization: Bearer dvt_…')")
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
        raise Unauthenticated("the API token is malformed (datavalley tokens start with 'dvt_')")
    row = session.execute(
        select(TokenRow).where(TokenRow.token_hash == token_digest(secret))
    ).scalar_one_or_none()
    if row is None:
        raise Unauthenticated("the API token is not known to this exchange")
    if row.revoked_at is not None:
        raise Unauthenticated(
            f"API token {row.id} was revoked at {row.revoked_at.isoformat()}", token_id=row.id
        )
    if row.expires_at <= now:
        raise Unauthenticated(f"API token {row.id} expired at {row.expires_at.isoformat()}", token_id=row.id)
    member = session.get(MemberRow, row.member_id)
    assert member is not None
    if not member.active:
        raise Unauthenticated(f"member {member.id} is deactivated", member_id=member.id)
    participant = session.get(ParticipantRow, member.participant_id)
    assert participant is not None
    if participant.status == ParticipantStatus.SUSPENDED:
        raise Unauthenticated(f"participant {participant.id} is suspended", participant_id=participant.id)
    roles = (
        frozenset(Role(r) for r in row.scopes)
        & frozenset(Role(r) for r in member.roles)
        & frozenset(Role(r) for r in participant.roles)
    )
    if participant.status != ParticipantStatus.VERIFIED:
        # Oversight (and operating the exchange) is never exercised by an unverified organisation.
        roles -= {Role.OPERATOR, Role.AUDITOR, Role.REGULATOR}
    return Principal(
        member.id,
        participant.id,
        roles,
        admin=member.admin,
        token_id=row.id,
        participant_verified=participant.status == ParticipantStatus.VERIFIED,
    )


def whoami(ctx: Context) -> dict[str, object]:
    """The caller's identity as the exchange sees it."""
    p = ctx.principal
    return {
        "member_id": p.member_id,
        "participant_id": p.participant_id,
        "roles": sorted(r.value for r in p.roles),
        "admin": p.admin,
        "token_id": p.token_id,
    }


# --- participants ------------------------------------------------------------------------------


def register_participant(
    ctx: Context,
    *,
    name: str,
    kind: str,
    country: str,
    registry_id: str,
    roles: list[str],
    admin_name: str,
    status: ParticipantStatus = ParticipantStatus.PENDING,
) -> tuple[Participant, Member]:
    """Register an organisation (status pending) with its first admin member. Operator only.

    Raises :class:`Forbidden`, :class:`InvalidInput` (bad USCC, kind, role) and :class:`Conflict`
    (an organisation with this registry identifier exists).
    """
    ctx.require(Role.OPERATOR, action="registering a participant")
    try:
        kind_v = ParticipantKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in ParticipantKind)
        raise InvalidInput(f"unknown participant kind {kind!r} (allowed: {allowed})", field="kind") from None
    role_v = _roles(roles, "roles")
    if Role.OPERATOR in role_v and not ctx.principal.is_system:
        raise Forbidden("only the exchange's own participant holds the operator role", action="register")
    country, reg = normalise_registry_id(country, registry_id)
    existing = ctx.session.execute(
        select(ParticipantRow.id).where(ParticipantRow.country == country, ParticipantRow.registry_id == reg)
    ).scalar_one_or_none()
    if existing is not None:
        raise Conflict(
            f"an organisation with registry id {reg} ({country}) is already registered as {existing}",
            participant_id=existing,
        )
    row = ParticipantRow(
        id=new_id("p"),
        name=_name(name, "name"),
        kind=kind_v.value,
        country=country,
        registry_id=reg,
        roles=[r.value for r in role_v],
        status=status.value,
        created_at=ctx.now,
        verified_at=ctx.now if status == ParticipantStatus.VERIFIED else None,
    )
    member = MemberRow(
        id=new_id("m"),
        participant_id=row.id,
        name=_name(admin_name, "admin_name"),
        kind="person",
        roles=[r.value for r in role_v],
        admin=True,
        active=True,
        created_at=ctx.now,
    )
    ctx.session.add(row)
    try:
        ctx.session.flush()
    except DBIntegrityError as exc:  # a concurrent registration of the same organisation won the race
        raise Conflict(f"an organisation with registry id {reg} ({country}) is already registered") from exc
    ctx.session.add(member)
    ctx.session.flush()
    # Organisations' registry IDs are public records; the admin's name is personal and stays out.
    ctx.emit(
        "participant.registered",
        [row.id, member.id],
        {
            "participant": row.id,
            "kind": row.kind,
            "country": country,
            "registry_id": reg,
            "roles": row.roles,
            "status": row.status,
            "admin_member": member.id,
        },
    )
    return _participant(row), _member(member)


def get_participant(ctx: Context, participant_id: str) -> Participant:
    """A participant visible to the caller (raises :class:`NotFound`)."""
    return _participant(_get_participant_row(ctx, participant_id))


def list_participants(
    ctx: Context, *, status: str | None = None, cursor: str | None = None, limit: int = 50
) -> Page[Participant]:
    """Participants visible to the caller: all for operator/auditor/regulator, else verified and own."""
    stmt = select(ParticipantRow)
    if status is not None:
        try:
            stmt = stmt.where(ParticipantRow.status == ParticipantStatus(status).value)
        except ValueError:
            raise InvalidInput(f"unknown status {status!r}", field="status") from None
    if not _oversees(ctx.principal):
        stmt = stmt.where(
            (ParticipantRow.status == "verified") | (ParticipantRow.id == ctx.principal.participant_id)
        )
    return paginate(ctx.session, stmt, ParticipantRow.id, cursor, limit, _participant)


_TRANSITIONS = {
    "verify": (ParticipantStatus.PENDING, ParticipantStatus.VERIFIED, "participant.verified"),
    "suspend": (ParticipantStatus.VERIFIED, ParticipantStatus.SUSPENDED, "participant.suspended"),
    "reinstate": (ParticipantStatus.SUSPENDED, ParticipantStatus.VERIFIED, "participant.reinstated"),
}


def change_participant_status(
    ctx: Context, participant_id: str, action: str, reason: str = ""
) -> Participant:
    """Operator moves a participant: verify (pending→verified), suspend, reinstate.

    Raises :class:`Forbidden`, :class:`NotFound`, :class:`Conflict` (wrong current status).
    """
    if action not in _TRANSITIONS:
        raise InvalidInput(f"unknown participant action {action!r}", field="action")
    ctx.require(Role.OPERATOR, action=f"{action} a participant")
    row = _get_participant_row(ctx, participant_id)
    src, dst, event = _TRANSITIONS[action]
    if row.status != src.value:
        raise Conflict(
            f"cannot {action} participant {participant_id}: it is {row.status}, not {src.value}",
            status=row.status,
        )
    if row.id == ctx.principal.participant_id and action == "suspend":
        raise Conflict("the operator cannot suspend its own participant")
    row.status = dst.value
    if dst == ParticipantStatus.VERIFIED and row.verified_at is None:
        row.verified_at = ctx.now
    ctx.emit(event, [row.id], {"participant": row.id, "status": row.status, "reason_digest": _reason(reason)})
    return _participant(row)


def _reason(reason: str) -> str | None:
    from datavalley.canonical import digest

    return digest(reason) if reason else None


# --- members -----------------------------------------------------------------------------------


def add_member(
    ctx: Context,
    participant_id: str,
    *,
    name: str,
    kind: str = "person",
    roles: list[str],
    admin: bool = False,
) -> Member:
    """Add a person or service account to a participant (its admin members, or the system)."""
    part = _get_participant_row(ctx, participant_id)
    _require_admin_of(ctx, participant_id, "adding a member")
    if kind not in ("person", "service"):
        raise InvalidInput(f"member kind must be 'person' or 'service', got {kind!r}", field="kind")
    role_v = _roles(roles, "roles")
    extra = [r.value for r in role_v if r.value not in part.roles]
    if extra:
        raise Forbidden(
            f"participant {participant_id} does not hold role(s) {', '.join(extra)}; "
            "a member cannot have them",
            roles=extra,
        )
    _no_escalation(ctx, role_v, "adding a member")
    row = MemberRow(
        id=new_id("m"),
        participant_id=participant_id,
        name=_name(name, "name"),
        kind=kind,
        roles=[r.value for r in role_v],
        admin=admin,
        active=True,
        created_at=ctx.now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    ctx.emit(
        "member.added",
        [participant_id, row.id],
        {"participant": participant_id, "member": row.id, "kind": kind, "roles": row.roles, "admin": admin},
    )
    return _member(row)


def list_members(
    ctx: Context, participant_id: str, *, cursor: str | None = None, limit: int = 50
) -> Page[Member]:
    """Members of a participant (its own members, or operator/auditor/regulator)."""
    _get_participant_row(ctx, participant_id)
    if not (_oversees(ctx.principal) or ctx.principal.participant_id == participant_id):
        raise Forbidden(f"members of participant {participant_id} are visible only to that participant")
    stmt = select(MemberRow).where(MemberRow.participant_id == participant_id)
    return paginate(ctx.session, stmt, MemberRow.id, cursor, limit, _member)


def get_member(ctx: Context, member_id: str) -> Member:
    """A member of the caller's participant (or any, for overseers)."""
    return _member(_get_member_row(ctx, member_id))


def deactivate_member(ctx: Context, member_id: str) -> Member:
    """Deactivate a member: its tokens stop working (participant admins)."""
    row = _get_member_row(ctx, member_id)
    _require_admin_of(ctx, row.participant_id, "deactivating a member")
    if not row.active:
        raise Conflict(f"member {member_id} is already deactivated")
    if row.id == ctx.principal.member_id:
        raise Conflict("a member cannot deactivate itself")
    row.active = False
    ctx.emit("member.deactivated", [row.participant_id, row.id], {"member": row.id})
    return _member(row)


# --- tokens -------------------------------------------------------------------------------------


def issue_token(
    ctx: Context,
    member_id: str,
    *,
    scopes: list[str] | None = None,
    ttl_days: int | None = None,
    description: str = "",
) -> IssuedToken:
    """Issue a new API token for a member; the secret is returned once and stored only as SHA-256.

    Allowed: the member itself, an admin of its participant, or the operator for an admin member
    (onboarding). Scopes default to the member's roles and may not exceed them.
    """
    row = ctx.session.get(MemberRow, member_id)
    if row is None:
        raise NotFound(f"member {member_id} does not exist", member_id=member_id)
    p = ctx.principal
    allowed = (
        p.is_system
        or p.member_id == member_id
        or (p.admin and p.participant_id == row.participant_id)
        or (p.has(Role.OPERATOR) and row.admin)
    )
    if not allowed:
        if not (_oversees(p) or p.participant_id == row.participant_id):
            raise NotFound(f"member {member_id} does not exist", member_id=member_id)
        raise Forbidden(
            f"issuing a token for member {member_id} needs that member or an admin of its participant"
        )
    if not row.active:
        raise Conflict(f"member {member_id} is deactivated; it cannot get tokens")
    scope_v = _roles(scopes, "scopes") if scopes else tuple(Role(r) for r in row.roles)
    if not scopes and p.participant_id == row.participant_id and not p.is_system:
        # A narrowed token mints no more than it holds: the default scope is what both have.
        scope_v = tuple(r for r in scope_v if r in p.roles)
        if not scope_v:
            raise Forbidden(f"this token holds none of member {member_id}'s roles; it cannot issue a token")
    extra = [s.value for s in scope_v if s.value not in row.roles]
    if extra:
        raise Forbidden(f"member {member_id} does not hold role(s) {', '.join(extra)}", scopes=extra)
    if p.participant_id == row.participant_id:
        _no_escalation(ctx, scope_v, "issuing a token")
    ttl = ctx.settings.token_ttl_days if ttl_days is None else ttl_days
    if not 1 <= ttl <= ctx.settings.max_token_ttl_days:
        raise InvalidInput(
            f"ttl_days must be between 1 and {ctx.settings.max_token_ttl_days}, got {ttl}", field="ttl_days"
        )
    secret = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    tok = TokenRow(
        id=new_id("t"),
        member_id=member_id,
        token_hash=token_digest(secret),
        scopes=[s.value for s in scope_v],
        description=description[:200],
        created_at=ctx.now,
        expires_at=ctx.now + timedelta(days=ttl),
        revoked_at=None,
    )
    ctx.session.add(tok)
    ctx.session.flush()
    ctx.emit(
        "token.issued",
        [row.participant_id, member_id, tok.id],
        {
            "token": tok.id,
            "member": member_id,
            "scopes": tok.scopes,
            "expires_at": tok.expires_at.isoformat(),
        },
    )
    return IssuedToken(_token(tok), secret)


def list_tokens(
    ctx: Context, member_id: str, *, cursor: str | None = None, limit: int = 50
) -> Page[ApiToken]:
    """A member's tokens (metadata only): the member itself or an admin of its participant."""
    row = _get_member_row(ctx, member_id)
    p = ctx.principal
    if not (p.member_id == member_id or (p.admin and p.participant_id == row.participant_id) or _oversees(p)):
        raise Forbidden(f"tokens of member {member_id} are visible to that member and its admins")
    stmt = select(TokenRow).where(TokenRow.member_id == member_id)
    return paginate(ctx.session, stmt, TokenRow.id, cursor, limit, _token)


def revoke_token(ctx: Context, token_id: str) -> ApiToken:
    """Revoke a token at once: its member, an admin of its participant, or the operator."""
    tok = ctx.session.get(TokenRow, token_id)
    member = ctx.session.get(MemberRow, tok.member_id) if tok is not None else None
    p = ctx.principal
    if (
        tok is None
        or member is None
        or not (
            p.has(Role.OPERATOR) or p.member_id == tok.member_id or p.participant_id == member.participant_id
        )
    ):
        raise NotFound(f"token {token_id} does not exist", token_id=token_id)
    if not (p.has(Role.OPERATOR) or p.member_id == tok.member_id or p.admin):
        raise Forbidden(f"revoking token {token_id} needs its member or an admin of its participant")
    if tok.revoked_at is not None:
        raise Conflict(f"token {token_id} is already revoked")
    tok.revoked_at = ctx.now
    ctx.emit("token.revoked", [member.participant_id, member.id, tok.id], {"token": tok.id})
    return _token(tok)


# --- keys ---------------------------------------------------------------------------------------


def register_key(ctx: Context, participant_id: str, *, public_key: str, proof: str) -> ParticipantKey:
    """Register a participant's Ed25519 public key, proven by a signature over
    :func:`datavalley.keys.registration_message` with the matching private key (admins only).
    """
    _get_participant_row(ctx, participant_id)
    _require_admin_of(ctx, participant_id, "registering a key")
    pub = decode_public_key(public_key)
    try:
        sig = base64.b64decode(proof, validate=True)
        pub.verify(sig, registration_message(participant_id, public_key))
    except (ValueError, InvalidSignature) as exc:
        raise InvalidInput(
            "proof is not a valid signature of the key registration message by this key "
            "(see docs/PROTOCOL.md, 'Key registration')",
            field="proof",
        ) from exc
    dup = ctx.session.execute(select(KeyRow.id).where(KeyRow.public_key == public_key)).scalar_one_or_none()
    if dup is not None:
        raise Conflict(f"this public key is already registered as {dup}", key_id=dup)
    row = KeyRow(
        id=new_id("k"),
        participant_id=participant_id,
        public_key=public_key,
        fingerprint=fingerprint(public_key),
        created_at=ctx.now,
        revoked_at=None,
    )
    ctx.session.add(row)
    ctx.session.flush()
    ctx.emit(
        "key.registered",
        [participant_id, row.id],
        {"participant": participant_id, "key": row.id, "fingerprint": row.fingerprint},
    )
    return _key(row)


def list_keys(
    ctx: Context, participant_id: str, *, cursor: str | None = None, limit: int = 50
) -> Page[ParticipantKey]:
    """A participant's public keys (public information for anyone who may see the participant)."""
    _get_participant_row(ctx, participant_id)
    stmt = select(KeyRow).where(KeyRow.participant_id == participant_id)
    return paginate(ctx.session, stmt, KeyRow.id, cursor, limit, _key)


def revoke_key(ctx: Context, key_id: str) -> ParticipantKey:
    """Revoke a participant key (its admins or the operator)."""
    row = ctx.session.get(KeyRow, key_id)
    if row is None:
        raise NotFound(f"key {key_id} does not exist", key_id=key_id)
    if not ctx.principal.has(Role.OPERATOR):
        _require_admin_of(ctx, row.participant_id, "revoking a key")
    if row.revoked_at is not None:
        raise Conflict(f"key {key_id} is already revoked")
    row.revoked_at = ctx.now
    ctx.emit("key.revoked", [row.participant_id, row.id], {"key": row.id})
    return _key(row)


def active_key(session: Session, participant_id: str) -> ParticipantKey | None:
    """The participant's newest unrevoked key (used to check its signatures)."""
    row = (
        session.execute(
            select(KeyRow)
            .where(KeyRow.participant_id == participant_id, KeyRow.revoked_at.is_(None))
            .order_by(KeyRow.id.desc())
        )
        .scalars()
        .first()
    )
    return _key(row) if row else None
