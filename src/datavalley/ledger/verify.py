"""Offline verification of ledger bundles and receipts: what an auditor runs, trusting only a key.

:func:`verify_bundle` recomputes every checkpoint's root from the entries, checks every signature with the
pinned exchange key, checks that all signed checkpoints are mutually consistent, and checks receipts. It
reports each problem as a :class:`Finding` of a precise kind rather than a single yes/no:

- ``changed``: entries differ from what a signed checkpoint committed to (located to a range of indices,
  or to one index when a receipt or adjacent checkpoints pin it down);
- ``deleted`` / ``inserted`` / ``reordered``: detected from the ``index`` each entry carries;
- ``bad_signature``: a checkpoint (or receipt checkpoint) not signed by the pinned exchange key;
- ``fork``: two checkpoints, both validly signed, that cannot both describe one append-only log;
- ``receipt``: a receipt whose proof fails or whose entry differs from the bundle's;
- ``key``: the bundle names a different exchange key than the one pinned;
- ``opening``: an opening (bundle ``openings`` or a receipt's ``opening``) does not match the commitments of
  its entry (docs/PROTOCOL.md, "Ledger privacy").
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from datavalley.errors import InvalidInput
from datavalley.ledger import merkle
from datavalley.ledger.commitment import reveal
from datavalley.ledger.note import (
    Checkpoint,
    CosignatureVerifier,
    NoteError,
    Verifier,
    note_cosignatures,
    open_note,
    parse_cosignature_verifier_key,
    parse_verifier_key,
)
from datavalley.ledger.service import BUNDLE_FORMAT, RECEIPT_FORMAT


@dataclass(frozen=True)
class Finding:
    """One thing that is wrong, with where."""

    kind: str
    message: str
    index: int | None = None
    size: int | None = None


@dataclass(frozen=True)
class Report:
    """The result of verifying a bundle: sizes checked and every finding (empty means all verified)."""

    entries: int
    checkpoints: int
    cosignatures: int
    receipts: int
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.findings


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a base64 string", field=what)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{what} is not valid base64", field=what) from exc


@dataclass(frozen=True)
class _Signed:
    cp: Checkpoint
    source: str
    cosigners: tuple[str, ...]


def _open_checkpoint(
    note: str,
    verifier: Verifier,
    witnesses: Sequence[CosignatureVerifier],
    source: str,
    findings: list[Finding],
) -> _Signed | None:
    try:
        text, _ = open_note(note, [verifier])
    except NoteError as exc:
        findings.append(Finding("bad_signature", f"{source}: {exc}", size=_claimed_size(note)))
        return None
    try:
        cp = Checkpoint.parse(text)
    except NoteError as exc:
        findings.append(Finding("bad_signature", f"{source}: signed but malformed checkpoint: {exc}"))
        return None
    try:
        cosigners = tuple(sorted(note_cosignatures(note, witnesses)))
    except NoteError as exc:
        findings.append(
            Finding("bad_signature", f"{source}: witness cosignature invalid: {exc}", size=cp.size)
        )
        cosigners = ()
    return _Signed(cp, source, cosigners)


def _claimed_size(note: str) -> int | None:
    lines = note.split("\n")
    try:
        return int(lines[1])
    except (IndexError, ValueError):
        return None


def _index_findings(entries: list[bytes]) -> list[Finding]:
    """Deletions, insertions and reorderings, from the index each entry states about itself."""
    claimed: list[int | None] = []
    for e in entries:
        try:
            obj = json.loads(e)
            claimed.append(
                obj["index"] if isinstance(obj, dict) and isinstance(obj.get("index"), int) else None
            )
        except (ValueError, UnicodeDecodeError):
            claimed.append(None)
    out: list[Finding] = []
    seen: dict[int, int] = {}
    for pos, c in enumerate(claimed):
        if c is None:
            out.append(
                Finding("inserted", f"entry at position {pos} is not a datavalley ledger entry", index=pos)
            )
        elif c in seen:
            out.append(
                Finding(
                    "inserted", f"entry at position {pos} repeats index {c} (first at {seen[c]})", index=pos
                )
            )
        else:
            seen[c] = pos
    valid = sorted(seen)
    expected = set(range(max(valid) + 1)) if valid else set()
    for missing in sorted(expected - seen.keys()):
        out.append(Finding("deleted", f"entry {missing} is missing from the log", index=missing))
    if not out:
        for pos, c in enumerate(claimed):
            if c != pos:
                out.append(Finding("reordered", f"entry with index {c} is at position {pos}", index=pos))
                break
    return out


def _opening_findings(entry: bytes, opening: Any, index: Any, source: str) -> list[Finding]:
    from datavalley.errors import IntegrityError

    try:
        reveal(entry, opening)
    except (InvalidInput, IntegrityError) as exc:
        return [Finding("opening", f"{source}: {exc}", index=index if isinstance(index, int) else None)]
    return []


def verify_receipt(receipt: dict[str, Any], verifier: Verifier) -> tuple[Checkpoint, bytes, int]:
    """Verify a receipt on its own: exchange signature on its checkpoint and the inclusion proof.

    Returns (checkpoint, entry, index). Raises :class:`InvalidInput` if malformed and
    :class:`datavalley.errors.IntegrityError` if it does not verify.
    """
    from datavalley.errors import IntegrityError

    if not isinstance(receipt, dict) or receipt.get("format") != RECEIPT_FORMAT:
        raise InvalidInput(f"not a receipt (format must be {RECEIPT_FORMAT!r})", field="format")
    index = receipt.get("index")
    if not isinstance(index, int) or index < 0:
        raise InvalidInput("receipt index must be a non-negative integer", field="index")
    entry = _b64(receipt.get("entry"), "entry")
    proof_raw = receipt.get("inclusion_proof")
    if not isinstance(proof_raw, list):
        raise InvalidInput("receipt inclusion_proof must be a list", field="inclusion_proof")
    proof = [_b64(p, "inclusion_proof") for p in proof_raw]
    note = receipt.get("checkpoint")
    if not isinstance(note, str):
        raise InvalidInput("receipt checkpoint must be a signed note", field="checkpoint")
    try:
        text, _ = open_note(note, [verifier])
        cp = Checkpoint.parse(text)
    except NoteError as exc:
        raise IntegrityError(f"receipt checkpoint does not verify with the exchange key: {exc}") from exc
    if not merkle.verify_inclusion(entry, index, cp.size, proof, cp.root_hash):
        raise IntegrityError(
            f"receipt inclusion proof for entry {index} does not verify against checkpoint {cp.size}"
        )
    return cp, entry, index


def verify_bundle(
    bundle: dict[str, Any],
    *,
    verifier_key: str | None = None,
    receipts: Sequence[dict[str, Any]] = (),
    extra_checkpoints: Sequence[str] = (),
) -> Report:
    """Verify a ledger bundle offline (see module docstring). Raises :class:`InvalidInput` if malformed."""
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise InvalidInput(f"not a ledger bundle (format must be {BUNDLE_FORMAT!r})", field="format")
    for name in ("entries", "checkpoints"):
        if not isinstance(bundle.get(name), list):
            raise InvalidInput(f"bundle field {name!r} must be a list", field=name)
    findings: list[Finding] = []
    bundle_key = bundle.get("verifier_key")
    pinned = verifier_key or bundle_key
    if not isinstance(pinned, str):
        raise InvalidInput("no exchange verifier key: pin one or include verifier_key", field="verifier_key")
    try:
        verifier = parse_verifier_key(pinned)
    except NoteError as exc:
        raise InvalidInput(f"exchange verifier key is malformed: {exc}", field="verifier_key") from exc
    if verifier_key and bundle_key and bundle_key != verifier_key:
        findings.append(Finding("key", "the bundle names a different exchange key than the pinned one"))
    witnesses: list[CosignatureVerifier] = []
    for w in bundle.get("witness_keys") or []:
        try:
            witnesses.append(parse_cosignature_verifier_key(w))
        except NoteError as exc:
            raise InvalidInput(f"witness key {w!r} is malformed: {exc}", field="witness_keys") from exc

    entries = [_b64(e, f"entries[{i}]") for i, e in enumerate(bundle["entries"])]
    findings.extend(_index_findings(entries))

    signed: list[_Signed] = []
    cosignatures = 0
    sources = [(n, f"checkpoint #{i}") for i, n in enumerate(bundle["checkpoints"])]
    sources += [(n, f"external checkpoint #{i}") for i, n in enumerate(extra_checkpoints)]
    parsed_receipts: list[tuple[Checkpoint, bytes, int, int]] = []
    for i, r in enumerate(receipts):
        note = r.get("checkpoint") if isinstance(r, dict) else None
        if isinstance(note, str):
            sources.append((note, f"receipt #{i} checkpoint"))
    for note, source in sources:
        if not isinstance(note, str):
            raise InvalidInput(f"{source} must be a signed note string", field="checkpoints")
        s = _open_checkpoint(note, verifier, witnesses, source, findings)
        if s is not None:
            if s.cp.origin != verifier.name:
                findings.append(Finding("key", f"{source}: origin {s.cp.origin!r} is not {verifier.name!r}"))
            signed.append(s)
            cosignatures += len(s.cosigners)

    # Roots of the bundle's entries at every signed size, in one pass over the entries.
    sizes = sorted({s.cp.size for s in signed})
    roots: dict[int, bytes] = {}
    frontier: list[bytes] = []
    done = 0
    for size in sizes:
        if size > len(entries):
            break
        frontier, _ = merkle.append_leaves(frontier, done, [merkle.leaf_hash(e) for e in entries[done:size]])
        done = size
        roots[size] = merkle.frontier_root(frontier)

    matches = {id(s): roots.get(s.cp.size) == s.cp.root_hash for s in signed}
    by_size: dict[int, list[_Signed]] = {}
    for s in signed:
        by_size.setdefault(s.cp.size, []).append(s)
    for size, group in sorted(by_size.items()):
        distinct = {g.cp.root_hash for g in group}
        if len(distinct) > 1:
            findings.append(
                Finding(
                    "fork",
                    f"two signed checkpoints of size {size} have different roots "
                    f"({', '.join(g.source for g in group)})",
                    size=size,
                )
            )
    good = sorted((s for s in signed if matches[id(s)]), key=lambda s: s.cp.size)
    last_good = max((s.cp.size for s in good), default=0)
    for s in sorted(signed, key=lambda s: s.cp.size):
        if matches[id(s)]:
            continue
        size = s.cp.size
        if size > len(entries):
            findings.append(
                Finding(
                    "deleted",
                    f"{s.source} covers {size} entries but the bundle has only {len(entries)}",
                    size=size,
                )
            )
        elif any(g.cp.size > size for g in good):
            later = next(g for g in good if g.cp.size > size)
            findings.append(
                Finding(
                    "fork",
                    f"{s.source} (size {size}) is signed but not consistent with "
                    f"{later.source} (size {later.cp.size}), which the entries match",
                    size=size,
                )
            )
        else:
            lo = max((g.cp.size for g in good if g.cp.size < size), default=0)
            where = f"entry {lo}" if size - lo == 1 else f"entries [{lo}, {size})"
            findings.append(
                Finding(
                    "changed",
                    f"{where} differ from what {s.source} (size {size}) signed",
                    index=lo if size - lo == 1 else None,
                    size=size,
                )
            )

    for i, r in enumerate(receipts):
        from datavalley.errors import IntegrityError

        try:
            cp, entry, index = verify_receipt(r, verifier)
        except (IntegrityError, InvalidInput) as exc:
            findings.append(Finding("receipt", f"receipt #{i}: {exc}"))
            continue
        parsed_receipts.append((cp, entry, index, i))
        if index >= len(entries):
            findings.append(
                Finding("deleted", f"receipt #{i} proves entry {index}, which the bundle lacks", index=index)
            )
        elif entries[index] != entry:
            findings.append(
                Finding("changed", f"entry {index} differs from the one receipt #{i} proves", index=index)
            )
    del last_good
    for n, o in enumerate(bundle.get("openings") or []):
        idx = o.get("index") if isinstance(o, dict) else None
        if not isinstance(idx, int) or not 0 <= idx < len(entries):
            findings.append(Finding("opening", f"opening #{n} names no entry of the bundle"))
            continue
        findings.extend(_opening_findings(entries[idx], o, idx, f"opening #{n}"))
    for i, r in enumerate(receipts):
        if isinstance(r, dict) and "opening" in r:
            try:
                entry = _b64(r.get("entry"), "entry")
            except InvalidInput:
                continue  # already reported as a bad receipt
            findings.extend(_opening_findings(entry, r["opening"], r.get("index"), f"receipt #{i}"))
    return Report(len(entries), len(signed), cosignatures, len(receipts), tuple(findings))
