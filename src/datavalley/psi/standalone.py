"""A one-file PSI node: serves :func:`~datavalley.psi.psi_router` from a JSON configuration.

For tests, benchmarks and trials between two machines, not for production (the exchange's node wires
the router to its policy engine, ledger, data registry and DP engine instead). Run it with::

    DV_PSI_CONFIG=node.json uvicorn --factory datavalley.psi.standalone:create_app --port 8001

and run a session from another node (same configuration format; ``peers`` holds the responder's key)::

    python -m datavalley.psi.standalone initiate --config a.json --url http://127.0.0.1:8001/psi/v1 \
        --responder p_b --contract c_1 --ids ids.txt --id-kind phone --out result.json

Configuration (all paths absolute)::

    {"participant": "p_b", "key_file": "/…/node.pem", "workdir": "/…/work", "workers": 2,
     "peers": {"p_a": "<base64 Ed25519 public key>"},
     "grants": [{"contract_id": "c_1", "mode": "intersection", "receiver": "p_a", "dataset": "customers",
                 "columns": {"amount": [0, 10000]}, "max_set_size": null}],
     "datasets": {"customers": {"format": "lines" | "csv", "path": "/…", "id_kind": "phone",
                                "id_column": "phone"}},
     "release": "package.module:function", "usage_log": "/…/usage.jsonl",
     "engines": {"c_1": "RR22"}}

``engines`` (optional) runs those contracts' sessions on SecretFlow's engine (docs/PSI.md section 9):
the node also serves ``POST /psi/v1/secretflow/sessions``, and ``initiate --engine RR22`` uses it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI

from datavalley.errors import InvalidInput, NotFound, PolicyViolation
from datavalley.keys import decode_public_key, load_private_key
from datavalley.psi.datasets import CsvDataset, LinesDataset
from datavalley.psi.http import psi_router
from datavalley.psi.initiator import Responder, run_psi
from datavalley.psi.model import (
    Bounds,
    ExactAggregate,
    Grant,
    Mode,
    PsiDataset,
    PsiUsage,
    Release,
    ReleasedAggregate,
    StaticPeers,
)
from datavalley.psi.normalise import IdKind
from datavalley.psi.responder import PsiNode
from datavalley.psi.suites import EngineProtocol, Suite
from datavalley.psi.workers import Workers

__all__ = ["ContractTable", "FileDataSource", "create_app", "load_release", "main", "no_release"]


class ContractTable:
    """A :class:`~datavalley.psi.model.PsiAuthoriser` over a fixed table of grants; usage to a JSONL file.

    A grant applies to a contract and to every peer other than this node; the responder checks that the
    peer is the grant's receiver.
    """

    def __init__(self, grants: Mapping[str, Grant], usage_log: Path | None = None) -> None:
        self.grants = dict(grants)
        self.usage_log = usage_log
        self.usages: list[PsiUsage] = []
        self._lock = threading.Lock()

    def authorise(self, contract_id: str, peer: str, mode: Mode, set_size: int) -> Grant:
        grant = self.grants.get(contract_id)
        if grant is None:
            raise PolicyViolation(f"no contract {contract_id} covers PSI with {peer}", contract=contract_id)
        if grant.mode is not mode:
            raise PolicyViolation(
                f"contract {contract_id} permits PSI mode {grant.mode.value!r}, not {mode.value!r}",
                contract=contract_id,
            )
        return grant

    def record(self, usage: PsiUsage) -> None:
        with self._lock:
            self.usages.append(usage)
            if self.usage_log is not None:
                with self.usage_log.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(usage.to_dict()) + "\n")


class FileDataSource:
    """A :class:`~datavalley.psi.model.PsiDataSource` over named files (ID lines or CSV)."""

    def __init__(self, datasets: Mapping[str, PsiDataset]) -> None:
        self.datasets = dict(datasets)

    def open(self, grant: Grant) -> PsiDataset:
        try:
            return self.datasets[grant.dataset]
        except KeyError:
            raise NotFound(f"this node holds no dataset {grant.dataset!r}", dataset=grant.dataset) from None


def load_release(spec: str) -> Release:
    """The release hook named ``module:function``."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise InvalidInput(f"release must be 'module:function', got {spec!r}", field="release")
    return cast(Release, getattr(importlib.import_module(module), name))


def no_release(exact: ExactAggregate) -> ReleasedAggregate:
    """The release hook of a node that releases no aggregates (raises :class:`PolicyViolation`)."""
    raise PolicyViolation(f"this node releases no aggregates (contract {exact.contract_id})")


def _dataset(spec: Mapping[str, Any]) -> PsiDataset:
    kind = IdKind(spec["id_kind"])
    path = Path(spec["path"])
    if spec.get("format", "lines") == "csv":
        return CsvDataset(path, spec["id_column"], kind)
    return LinesDataset(path, kind)


def _grants(cfg: Mapping[str, Any]) -> dict[str, Grant]:
    return {
        g["contract_id"]: Grant(
            contract_id=g["contract_id"],
            mode=Mode(g["mode"]),
            receiver=g["receiver"],
            dataset=g.get("dataset", ""),
            columns={c: Bounds(int(lo), int(hi)) for c, (lo, hi) in g.get("columns", {}).items()},
            max_set_size=g.get("max_set_size"),
        )
        for g in cfg["grants"]
    }


def create_app(config: Path | None = None) -> FastAPI:
    """The node app for the configuration file ``config`` (default: ``$DV_PSI_CONFIG``)."""
    path = config or Path(os.environ["DV_PSI_CONFIG"])
    cfg = json.loads(path.read_text("utf-8"))
    grants = _grants(cfg)
    usage_log = Path(cfg["usage_log"]) if cfg.get("usage_log") else None
    node = PsiNode(
        participant=cfg["participant"],
        authoriser=ContractTable(grants, usage_log),
        data=FileDataSource({name: _dataset(spec) for name, spec in cfg.get("datasets", {}).items()}),
        release=load_release(cfg["release"]),
        workdir=Path(cfg["workdir"]),
        workers=Workers(cfg.get("workers")),
    )
    peers = StaticPeers({p: decode_public_key(k) for p, k in cfg["peers"].items()})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        node.workers.start()
        yield
        node.close()

    app = FastAPI(title=f"datavalley PSI node {cfg['participant']}", lifespan=lifespan)
    signing_key = load_private_key(Path(cfg["key_file"]))
    app.include_router(psi_router(node, signing_key=signing_key, peers=peers), prefix="/psi/v1")
    engines = {str(c): EngineProtocol(p) for c, p in (cfg.get("engines") or {}).items()}
    if engines:
        from datavalley.psi.secretflow import SecretFlowResponder, secretflow_router

        def protocol_of(contract_id: str) -> EngineProtocol:
            if contract_id not in engines:
                raise PolicyViolation(f"contract {contract_id} does not run on SecretFlow's engine")
            return engines[contract_id]

        engine = SecretFlowResponder(
            node.participant, node.authoriser, node.data, Path(cfg["workdir"]) / "secretflow", protocol_of
        )
        app.include_router(secretflow_router(engine, signing_key=signing_key, peers=peers), prefix="/psi/v1")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "participant": node.participant}

    return app


def main(argv: list[str] | None = None) -> int:
    """``initiate``: run one session as initiator and write what was learned as JSON (see the module doc)."""
    parser = argparse.ArgumentParser(prog="python -m datavalley.psi.standalone")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("initiate", help="run one PSI session against a responder node")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument(
        "--url", required=True, help="the responder's PSI base URL, e.g. http://host:port/psi/v1"
    )
    run.add_argument("--responder", required=True, help="the responder's participant ID")
    run.add_argument("--contract", required=True)
    run.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.INTERSECTION.value)
    run.add_argument("--suite", choices=[s.value for s in Suite], default=Suite.X25519.value)
    run.add_argument("--ids", type=Path, required=True, help="one ID per line")
    run.add_argument("--id-kind", choices=[k.value for k in IdKind], default=IdKind.TEXT.value)
    run.add_argument("--column", action="append", default=[], help="aggregate column (repeatable)")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--engine", choices=[p.value for p in EngineProtocol], help="run on SecretFlow's engine")
    args = parser.parse_args(argv)
    cfg = json.loads(args.config.read_text("utf-8"))
    usage_log = Path(cfg["usage_log"]) if cfg.get("usage_log") else None
    started = time.monotonic()
    responder = Responder(args.url, args.responder, decode_public_key(cfg["peers"][args.responder]))
    common: dict[str, Any] = {
        "responder": responder,
        "local": cfg["participant"],
        "signing_key": load_private_key(Path(cfg["key_file"])),
        "authoriser": ContractTable(_grants(cfg), usage_log),
        "dataset": LinesDataset(args.ids, IdKind(args.id_kind)),
        "contract_id": args.contract,
        "mode": Mode(args.mode),
        "workdir": Path(cfg["workdir"]),
    }
    if args.engine:
        from datavalley.psi.secretflow import run_secretflow_psi

        outcome = run_secretflow_psi(**common, protocol=EngineProtocol(args.engine))
    else:
        outcome = run_psi(
            **common,
            suite=Suite(args.suite),
            columns=tuple(args.column),
            workers=None if not cfg.get("workers") else Workers(cfg["workers"]),
        )
    result = {
        "session_id": outcome.session_id,
        "mode": outcome.mode.value,
        "cardinality": outcome.cardinality,
        "peer_set_size": outcome.peer_set_size,
        "intersection_file": str(outcome.intersection_file) if outcome.intersection_file else None,
        "aggregate": outcome.aggregate.to_dict() if outcome.aggregate else None,
        "usage": outcome.usage.to_dict(),
        "seconds": round(time.monotonic() - started, 3),
    }
    args.out.write_text(json.dumps(result, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
