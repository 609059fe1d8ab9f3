"""Node side: the identifier sketch of a registered resource, computed where the data lives.

The salt is the exporter's secret (``NODE_HOME/node/crossborder/<participant>.salt``, 32 random bytes,
mode 0600), created on first use: the exchange never learns it, so sketch registers cannot be matched
against a dictionary of identifiers. One salt per exporter means the same person in two of its resources
hashes to the same value (and counts once).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from datavalley.catalog.pii import IDENTIFIER_KINDS, PIIKind
from datavalley.crossborder import sketch
from datavalley.errors import Conflict, InvalidInput, NotFound
from datavalley.node.registry import NodeRegistry

#: Preferred identifier kinds, most specific first (the same kind across resources dedupes people).
PRIORITY = (PIIKind.CN_RIC, PIIKind.CN_MOBILE, PIIKind.EMAIL, PIIKind.BANK_CARD, PIIKind.CN_PLATE)


def salt_for(home: Path, participant_id: str) -> bytes:
    """The exporter's node-held salt (created 0600 on first use)."""
    if not participant_id.replace("_", "").isalnum():
        raise InvalidInput("participant id is malformed", field="participant_id")
    d = home / "node" / "crossborder"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / f"{participant_id}.salt"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        value = secrets.token_bytes(32)
        fh.write(value)
    return value


def identifier_column(pii: dict[str, Any]) -> tuple[str, str] | None:
    """(column, kind) of the best identifier column in a resource's PI report, or None."""
    best: tuple[int, str, str] | None = None
    for col in pii.get("columns", ()):
        kinds = {str(k) for k in col.get("kinds", ())} | {str(col.get("kind"))}
        for rank, kind in enumerate(PRIORITY):
            if kind.value in kinds and kind in IDENTIFIER_KINDS and (best is None or rank < best[0]):
                best = (rank, str(col["column"]), kind.value)
    return None if best is None else (best[1], best[2])


def resource_sketch(home: Path, participant_id: str, resource_id: str, pii: dict[str, Any]) -> bytes:
    """The sketch of the resource's distinct identifiers, read from the node's registered file."""
    found = identifier_column(pii)
    if found is None:
        raise Conflict(f"resource {resource_id} has no identifier column to count individuals by")
    column, kind = found
    try:
        loc = NodeRegistry(home).get(resource_id)
    except NotFound:
        raise Conflict(f"resource {resource_id} is not held by this node") from None
    if loc.kind != "file":
        raise Conflict(f"resource {resource_id} lives in a database; sketches are computed on file sources")
    from datavalley.catalog.sources import connect, open_source

    quoted = '"' + column.replace('"', '""') + '"'
    with connect(open_source(loc.location, format=loc.format)) as conn:
        rows = conn.execute(f"SELECT DISTINCT CAST({quoted} AS VARCHAR) FROM {conn.view}")
    return sketch.build(kind, (r[0] for r in rows), salt_for(home, participant_id))


def preflight(client: Any, contract_id: str, operation: str, mode: str | None = None) -> None:
    """A node asks the exchange before data moves (e.g. before a PSI session computes anything): the
    decision is recorded; a refusal raises :class:`PolicyViolation` naming the pathway and what to file."""
    from datavalley.errors import PolicyViolation

    answer, _, _ = client.post(
        f"/v1/crossborder/contracts/{contract_id}/transfers", {"operation": operation, "mode": mode}
    )
    if not answer.get("allowed", False):
        raise PolicyViolation(
            str(answer.get("message") or "the cross-border transfer is refused"),
            pathway=(answer.get("decision") or {}).get("pathway"),
            missing=answer.get("missing") or [],
            sketches_needed=answer.get("sketches_needed") or [],
        )
