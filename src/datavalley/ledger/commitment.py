"""Commitments that keep ledger entries from revealing relationships (docs/PROTOCOL.md, "Ledger privacy").

Every entry the ledger publishes (version 2) carries, instead of the actor, the acting participant, each
subject ID and the payload digest, a *commitment* to it:

    salt(label)          = HMAC-SHA256(key, "datavalley-salt/v1\\n" + label)
    commit(label, value) = "c1:" + hex(SHA-256(salt(label) ‖ UTF-8(value)))

with one fresh 256-bit ``key`` per entry and labels ``actor``, ``participant``, ``payload`` and
``subjects/<i>``. Without the key a commitment is a hash of a random 256-bit salt and an ID: nobody can test
whether an entry names a participant, even one who knows every ID, and two entries about the same contract
are unlinkable. The exchange keeps the key beside the event and gives the *opening*
``{format, key, actor, participant, subjects, payload}`` to the parties of the event and to overseers
(operator, auditor, regulator); anyone holding it recomputes the commitments and so checks the clear entry
against the published one, whose Merkle inclusion and checkpoints verify exactly as before. A per-field salt
may be disclosed alone (selective disclosure of one field). Entries of version 1 (written before this scheme)
are clear and need no opening.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from typing import Any

from datavalley.errors import IntegrityError, InvalidInput

PREFIX = "c1:"
OPENING_FORMAT = "datavalley-opening/v1"
COMMITTED_VERSION = 2


def new_key() -> bytes:
    """A fresh 256-bit commitment key for one entry."""
    return secrets.token_bytes(32)


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class _Salts:
    """HMAC-SHA256 under one entry key, with the padded key blocks hashed once (RFC 2104): the emit path
    derives up to seven salts per event, and a one-shot ``hmac.digest`` re-keys each time."""

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def salt(self, label: str) -> bytes:
        inner = self._inner.copy()
        inner.update(b"datavalley-salt/v1\n" + label.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def commit(self, label: str, value: str) -> str:
        return PREFIX + hashlib.sha256(self.salt(label) + value.encode("utf-8")).hexdigest()


def salt(key: bytes, label: str) -> bytes:
    """The salt of one field of an entry: HMAC-SHA256(key, "datavalley-salt/v1\\n" + label)."""
    return _Salts(key).salt(label)


def commit(key: bytes, label: str, value: str) -> str:
    """The commitment to ``value`` in field ``label``."""
    return _Salts(key).commit(label, value)


def commit_fields(
    key: bytes, actor: str | None, participant: str | None, subjects: list[str], payload: str
) -> tuple[str | None, str | None, list[str], str]:
    """The committed (actor, participant, subjects, payload) of an entry; None stays None (the exchange)."""
    k = _Salts(key)
    return (
        None if actor is None else k.commit("actor", actor),
        None if participant is None else k.commit("participant", participant),
        [k.commit(f"subjects/{i}", s) for i, s in enumerate(subjects)],
        k.commit("payload", payload),
    )


def opening(
    key: bytes, actor: str | None, participant: str | None, subjects: list[str], payload: str
) -> dict[str, Any]:
    """What a party or overseer gets to open an entry."""
    return {
        "format": OPENING_FORMAT,
        "key": base64.b64encode(key).decode("ascii"),
        "actor": actor,
        "participant": participant,
        "subjects": list(subjects),
        "payload": payload,
    }


def reveal(entry: bytes, opening_: dict[str, Any] | None) -> dict[str, Any]:
    """The clear entry: a version-1 entry as it is; a committed one checked against ``opening_``.

    Raises :class:`InvalidInput` if the entry or opening is malformed or an opening is missing, and
    :class:`IntegrityError` if the opening does not match the entry's commitments.
    """
    try:
        obj = json.loads(entry.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the ledger entry is not JSON") from exc
    if not isinstance(obj, dict):
        raise InvalidInput("the ledger entry is not a JSON object")
    if obj.get("v") != COMMITTED_VERSION:
        return obj
    if not isinstance(opening_, dict) or opening_.get("format") != OPENING_FORMAT:
        raise InvalidInput(
            f"entry {obj.get('index')} is committed: an opening ({OPENING_FORMAT}) is needed", field="opening"
        )
    try:
        key = base64.b64decode(str(opening_.get("key")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("opening key is not base64", field="opening") from exc
    actor, participant = opening_.get("actor"), opening_.get("participant")
    subjects, payload = opening_.get("subjects"), opening_.get("payload")
    if (
        len(key) != 32
        or not all(v is None or isinstance(v, str) for v in (actor, participant))
        or not isinstance(subjects, list)
        or not all(isinstance(s, str) for s in subjects)
        or not isinstance(payload, str)
    ):
        raise InvalidInput("opening is malformed", field="opening")
    want = commit_fields(key, actor, participant, subjects, payload)
    have = (obj.get("actor"), obj.get("participant"), obj.get("subjects"), obj.get("payload"))
    if want != have:
        raise IntegrityError(f"the opening does not match the commitments of entry {obj.get('index')}")
    return {**obj, "actor": actor, "participant": participant, "subjects": subjects, "payload": payload}
