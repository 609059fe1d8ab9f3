"""The exchange core: one object the API, CLI and demo all drive.

:class:`Exchange` owns the settings, the database engine, the clock and the exchange's signing key. Every
use case is a service function ``fn(ctx, ...)`` run by :meth:`Exchange.run` (state changes) or
:meth:`Exchange.read` (queries) inside one unit of work:

1. open a transaction, check the Idempotency-Key (replay the stored answer if it was seen),
2. call the service function, which checks authorisation and emits domain events into the outbox,
3. store the idempotency record, commit,
4. sequence the outbox onto the ledger and return a receipt per event (index, checkpoint, proof).

If step 4 is interrupted, the events stay in the outbox and the next sequencing run picks them up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from datavalley.canonical import digest
from datavalley.config import Settings
from datavalley.errors import Conflict, Forbidden, InvalidInput
from datavalley.events import Actor, emit
from datavalley.idempotency import IdempotencyRow
from datavalley.identity.model import Principal, Role
from datavalley.keys import load_private_key
from datavalley.ledger.note import Signer
from datavalley.store.db import make_engine, migrate, read_only

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Context:
    """What a service function gets: the open session, the caller, the time and the settings."""

    session: Session
    principal: Principal
    now: datetime
    settings: Settings
    event_ids: list[int] = field(default_factory=list)
    signer: Signer | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.member_id, self.principal.participant_id)

    def emit(self, type: str, subjects: list[str], payload: dict[str, Any]) -> None:
        """Record a domain event in this unit of work (see :mod:`datavalley.events`)."""
        row = emit(self.session, self.now, self.actor, type, subjects, payload)
        self.event_ids.append(row.id)

    def require(self, *roles: Role, action: str) -> None:
        """Raise :class:`Forbidden` unless the caller holds one of ``roles``."""
        if not self.principal.has(*roles):
            wanted = " or ".join(r.value for r in roles)
            held = ", ".join(sorted(r.value for r in self.principal.roles)) or "none"
            raise Forbidden(f"{action} needs the {wanted} role (this token has: {held})", action=action)


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key and a digest of the request it came with."""

    key: str
    request_digest: str

    @staticmethod
    def of(key: str, method: str, path: str, body: Any) -> Idempotency:
        if not key or len(key) > 200:
            raise InvalidInput("Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key")
        return Idempotency(key, digest({"method": method, "path": path, "body": body}))


@dataclass(frozen=True)
class Outcome:
    """What a state change returns: the rendered answer, its receipts, and whether it was a replay."""

    body: dict[str, Any]
    status: int
    receipts: list[dict[str, Any]]
    replayed: bool = False


class Exchange:
    """The exchange: settings, storage, clock and signing key, and the unit-of-work runner."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        clock: Callable[[], datetime] | None = None,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.resolved_database_url)
        self._reader = read_only(self.engine)
        self._clock = clock or (lambda: datetime.now(UTC))
        key = signing_key or load_private_key(settings.exchange_key_path)
        self.signer = Signer(settings.origin, key)
        from datavalley.ledger.service import Ledger

        self.ledger = Ledger(self)

    @classmethod
    def open(cls, settings: Settings, **kwargs: Any) -> Exchange:
        """Open an initialised exchange, applying pending migrations (never onto a newer schema)."""
        engine = kwargs.pop("engine", None) or make_engine(settings.resolved_database_url)
        migrate(engine)
        return cls(settings, engine=engine, **kwargs)

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()

    def now(self) -> datetime:
        """The exchange clock (UTC-aware); tests replace it to move time."""
        return self._clock()

    def session(self, *, write: bool) -> Session:
        """A new session; write sessions take SQLite's write lock when they begin."""
        return Session(self.engine if write else self._reader, expire_on_commit=False)

    def authenticate(self, secret: str | None) -> Principal:
        """The principal behind an API token (raises :class:`Unauthenticated`)."""
        from datavalley.identity.service import authenticate

        with self.session(write=False) as s:
            return authenticate(s, secret, self.now())

    def read(
        self, principal: Principal, fn: Callable[Concatenate[Context, P], T], *a: P.args, **kw: P.kwargs
    ) -> T:
        """Run a query use case in a read-only unit of work."""
        with self.session(write=False) as s, s.begin():
            return fn(Context(s, principal, self.now(), self.settings, signer=self.signer), *a, **kw)

    def run(
        self,
        principal: Principal,
        fn: Callable[..., T],
        *args: Any,
        render: Callable[[T], dict[str, Any]],
        http_status: int = 200,
        idempotency: Idempotency | None = None,
        redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Outcome:
        """Run a state-changing use case in one transaction and return its rendered answer and receipts.

        With ``idempotency``, a repeat of the same key and request replays the first answer (with
        ``redact`` applied to what was stored), and a repeat with a different request is a
        :class:`Conflict`. Raises whatever the service function raises; nothing is written then.
        """
        principal_key = principal.member_id or "system"
        with self.session(write=True) as s, s.begin():
            stored = claim_idempotency_key(s, principal_key, idempotency, self.now()) if idempotency else None
            if stored is None:
                ctx = Context(s, principal, self.now(), self.settings, signer=self.signer)
                value = fn(ctx, *args, **kwargs)
                body = render(value)
                event_ids = list(ctx.event_ids)
                if idempotency is not None:
                    s.execute(
                        update(IdempotencyRow)
                        .where(
                            IdempotencyRow.principal == principal_key, IdempotencyRow.key == idempotency.key
                        )
                        .values(
                            status=http_status,
                            response=redact(body) if redact else body,
                            event_ids=event_ids,
                            created_at=ctx.now,
                        )
                    )
        if stored is not None:
            code, body, event_ids = stored
            return Outcome(body, code, self.ledger.receipts(event_ids), replayed=True)
        return Outcome(body, http_status, self.ledger.receipts(event_ids))


#: How long a request waits for a concurrent request with the same Idempotency-Key before it is told
#: (409, Retry-After) that the first one is still in progress.
IDEMPOTENCY_WAIT_MS = 20_000


def claim_idempotency_key(
    s: Session, principal_key: str, idem: Idempotency, now: datetime
) -> tuple[int, dict[str, Any], list[int]] | None:
    """Claim ``idem`` for this transaction, or return the stored answer of the request that claimed it.

    The key's row is inserted first (``INSERT … ON CONFLICT DO NOTHING``) and completed at the end of the
    same transaction, so concurrent requests with one key never both run: on PostgreSQL the second insert
    waits on the first transaction's row lock, then finds the committed answer (or, if the first rolled
    back, claims the key itself); on SQLite writers are already serialised by ``BEGIN IMMEDIATE``. A request
    that waits longer than :data:`IDEMPOTENCY_WAIT_MS` gets :class:`Conflict` with ``retry_after`` — never a
    unique-violation 500. Returns None when this transaction claimed the key.
    """
    values = {
        "principal": principal_key,
        "key": idem.key,
        "request_digest": idem.request_digest,
        "status": 0,
        "response": {},
        "event_ids": [],
        "created_at": now,
    }
    postgres = s.get_bind().dialect.name == "postgresql"
    insert = pg_insert if postgres else sqlite_insert
    try:
        if postgres:
            s.execute(text(f"SET LOCAL lock_timeout = '{IDEMPOTENCY_WAIT_MS}ms'"))
        stmt = insert(IdempotencyRow).values(values).on_conflict_do_nothing().returning(IdempotencyRow.key)
        claimed = s.execute(stmt).scalar_one_or_none() is not None
        if postgres:
            s.execute(text("SET LOCAL lock_timeout = DEFAULT"))
    except OperationalError:
        raise Conflict(
            f"a request with Idempotency-Key {idem.key!r} is still in progress; retry shortly",
            key=idem.key,
            retry_after=1,
        ) from None
    if claimed:
        return None
    seen = s.execute(
        select(IdempotencyRow)
        .where(IdempotencyRow.principal == principal_key, IdempotencyRow.key == idem.key)
        .execution_options(populate_existing=True)
    ).scalar_one()
    if seen.request_digest != idem.request_digest:
        raise Conflict(f"Idempotency-Key {idem.key!r} was already used for a different request", key=idem.key)
    return seen.status, dict(seen.response), list(seen.event_ids)


def token_digest(secret: str) -> str:
    """SHA-256 hex of an API token: 256-bit random secrets need no slow hash, only a one-way one."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def first_or_none(session: Session, stmt: Any) -> Any:
    """The first row of ``stmt`` or None."""
    return session.execute(stmt).scalars().first()


__all__ = ["Context", "Exchange", "Idempotency", "Outcome", "first_or_none", "select", "token_digest"]
