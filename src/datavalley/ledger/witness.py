"""A witness: a separate party's process that checks the exchange never forks its log, and cosigns.

Each round it fetches the latest checkpoint, verifies the exchange's signature with the key it pinned on
its first run, proves the new checkpoint consistent with the last one it cosigned, and only then cosigns
(C2SP tlog-cosignature) and submits the cosignature. Its state (pinned key, last size and root) is a small
JSON file written atomically, so a restarted witness still refuses a rolled-back or forked log.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datavalley.client import Client
from datavalley.errors import IntegrityError, InvalidInput
from datavalley.ledger import merkle
from datavalley.ledger.note import (
    Checkpoint,
    CosignatureSigner,
    NoteError,
    cosign,
    open_note,
    parse_verifier_key,
)


@dataclass(frozen=True)
class WitnessState:
    """What the witness remembers between rounds."""

    exchange_key: str
    size: int
    root_hash: bytes

    @staticmethod
    def load(path: Path) -> WitnessState | None:
        if not path.exists():
            return None
        try:
            d = json.loads(path.read_text("utf-8"))
            return WitnessState(d["exchange_key"], int(d["size"]), base64.b64decode(d["root_hash"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"witness state file {path} is malformed: {exc}", path=str(path)) from exc

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "exchange_key": self.exchange_key,
                    "size": self.size,
                    "root_hash": base64.b64encode(self.root_hash).decode(),
                }
            ),
            "utf-8",
        )
        os.replace(tmp, path)


@dataclass(frozen=True)
class Round:
    """The outcome of one witness round."""

    size: int
    cosigned: bool
    message: str


def witness_round(
    client: Client, signer: CosignatureSigner, state_path: Path, *, now: Callable[[], float] = time.time
) -> Round:
    """Run one round. Raises :class:`IntegrityError` when the exchange equivocates (never cosigns then)."""
    state = WitnessState.load(state_path)
    if state is None:
        key = client.verifier_key()["verifier_key"]
        state = WitnessState(key, 0, merkle.EMPTY_ROOT)
    verifier = parse_verifier_key(state.exchange_key)
    note = client.checkpoint()["note"]
    try:
        text, _ = open_note(note, [verifier])
        cp = Checkpoint.parse(text)
    except NoteError as exc:
        raise IntegrityError(f"checkpoint does not verify with the pinned exchange key: {exc}") from exc
    if cp.size < state.size:
        raise IntegrityError(
            f"the exchange rolled back: checkpoint size {cp.size} < {state.size} already witnessed"
        )
    if cp.size == state.size:
        if cp.root_hash != state.root_hash:
            raise IntegrityError(f"fork: two checkpoints of size {cp.size} with different roots")
    elif state.size > 0:
        proof = client.consistency_proof(state.size, cp.size)
        if not merkle.verify_consistency(state.size, cp.size, state.root_hash, cp.root_hash, proof):
            raise IntegrityError(
                f"fork: checkpoint {cp.size} is not consistent with witnessed checkpoint {state.size}"
            )
    line = cosign(text, signer, int(now()))
    client.cosign(cp.size, line)
    WitnessState(state.exchange_key, cp.size, cp.root_hash).save(state_path)
    return Round(cp.size, True, f"cosigned checkpoint {cp.size}")
