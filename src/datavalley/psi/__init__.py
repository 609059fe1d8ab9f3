"""Two-party ECDH private set intersection between nodes (docs/PSI.md).

A node mounts :func:`psi_router` over a :class:`PsiNode` (the responder); the party that is to learn the
result runs :func:`run_psi` against it (the initiator). Both sides plug in a :class:`PsiAuthoriser`
(contract check and metering); the responder also a :class:`PsiDataSource` and, for the aggregate mode,
a ``release`` noise hook (:data:`Release`).

Submodules load on first use (PEP 562), so that worker processes, which import only the batch tasks,
do not pay for FastAPI, httpx and the database layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datavalley.psi.datasets import CsvDataset, LinesDataset, MemoryDataset
    from datavalley.psi.http import psi_router
    from datavalley.psi.initiator import Responder, run_psi
    from datavalley.psi.model import (
        Bounds,
        ExactAggregate,
        Grant,
        Mode,
        PeerDirectory,
        PsiAuthoriser,
        PsiDataset,
        PsiDataSource,
        PsiOutcome,
        PsiUsage,
        Release,
        ReleasedAggregate,
        StaticPeers,
    )
    from datavalley.psi.normalise import IdKind, InvalidId, NormalisationReport, normalise
    from datavalley.psi.responder import PsiNode
    from datavalley.psi.suites import Suite
    from datavalley.psi.workers import Workers

_EXPORTS = {
    "Bounds": "datavalley.psi.model",
    "CsvDataset": "datavalley.psi.datasets",
    "ExactAggregate": "datavalley.psi.model",
    "Grant": "datavalley.psi.model",
    "IdKind": "datavalley.psi.normalise",
    "InvalidId": "datavalley.psi.normalise",
    "LinesDataset": "datavalley.psi.datasets",
    "MemoryDataset": "datavalley.psi.datasets",
    "Mode": "datavalley.psi.model",
    "NormalisationReport": "datavalley.psi.normalise",
    "PeerDirectory": "datavalley.psi.model",
    "PsiAuthoriser": "datavalley.psi.model",
    "PsiDataSource": "datavalley.psi.model",
    "PsiDataset": "datavalley.psi.model",
    "PsiNode": "datavalley.psi.responder",
    "PsiOutcome": "datavalley.psi.model",
    "PsiUsage": "datavalley.psi.model",
    "Release": "datavalley.psi.model",
    "ReleasedAggregate": "datavalley.psi.model",
    "Responder": "datavalley.psi.initiator",
    "StaticPeers": "datavalley.psi.model",
    "Suite": "datavalley.psi.suites",
    "Workers": "datavalley.psi.workers",
    "normalise": "datavalley.psi.normalise",
    "psi_router": "datavalley.psi.http",
    "run_psi": "datavalley.psi.initiator",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'datavalley.psi' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Bounds",
    "CsvDataset",
    "ExactAggregate",
    "Grant",
    "IdKind",
    "InvalidId",
    "LinesDataset",
    "MemoryDataset",
    "Mode",
    "NormalisationReport",
    "PeerDirectory",
    "PsiAuthoriser",
    "PsiDataSource",
    "PsiDataset",
    "PsiNode",
    "PsiOutcome",
    "PsiUsage",
    "Release",
    "ReleasedAggregate",
    "Responder",
    "StaticPeers",
    "Suite",
    "Workers",
    "normalise",
    "psi_router",
    "run_psi",
]
