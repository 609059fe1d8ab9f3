"""The node's private SQL service: a query checked against its contract and answered next to the data.

Order of operations (docs/PRIVATE_SQL.md, docs/PROTOCOL.md §8):

1. the contract must be the caller's, live, and for a private-analytics product;
2. the node's copy of each table must be the registered version (its fingerprint equals the resource's
   current fingerprint), else the query is refused — a contract covers registered data only;
3. the SQL is compiled under the product's privacy rules narrowed by the contract (minimum group size,
   privacy unit): syntax and grammar errors are raised here, before anything is spent;
4. a repeat of the same query (same digest) on the same data version returns the cached release at no
   cost — averaging repeated answers gains nothing;
5. the exact aggregates are computed in the locked-down engine (they never leave the node);
6. the use is recorded at the exchange (:func:`datavalley.market.contracts.record_use`): policy check
   and atomic reservation of the privacy cost — if that is refused, nothing is released;
7. noise is added, groups are suppressed, the release is cached and returned.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from datavalley.errors import Forbidden, InvalidInput, PolicyViolation
from datavalley.exchange import Exchange
from datavalley.identity.model import Principal
from datavalley.market import contracts
from datavalley.market.model import ContractState, ProductKind
from datavalley.market.policy import parse
from datavalley.market.products import get_product
from datavalley.node.registry import NodeRegistry
from datavalley.node.sources import SourceResolver, choose_engine
from datavalley.privacy import DuckDBEngine, PrivacyRules, ProductSchema, TableSpec, compile_query, release
from datavalley.rights.registration import get_resource

DEFAULT_EPSILON = 0.5
MAX_ENGINES = 8


class ReleaseCache:
    """Released answers by (contract, query digest, data version), in ``NODE_HOME/releases.db`` (0600)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS releases (key TEXT PRIMARY KEY, body TEXT NOT NULL)")
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM releases WHERE key = ?", (key,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, key: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO releases (key, body) VALUES (?, ?)", (key, json.dumps(body))
            )

    def close(self) -> None:
        self._db.close()


def _rule_kwargs(extra: dict[str, Any]) -> dict[str, Any]:
    """Product-declared rules as :class:`PrivacyRules` keyword arguments (JSON lists → tuples/sets)."""
    out: dict[str, Any] = dict(extra)
    if "join_keys" in out:
        out["join_keys"] = tuple(tuple(p) for p in out["join_keys"])
    if "public_tables" in out:
        out["public_tables"] = frozenset(out["public_tables"])
    return out


def _spark_engine(sources: dict[str, str]) -> Any:
    from datavalley.node.sources import spark_session
    from datavalley.privacy.spark import SparkEngine

    return SparkEngine(sources, spark=spark_session(), timeout_s=120.0)


class QueryService:
    """Private SQL on this node's registered data, metered against the exchange's contracts."""

    def __init__(self, exchange: Exchange, home: Path | None = None) -> None:
        self.exchange = exchange
        home = home or exchange.settings.home
        self.registry = NodeRegistry(home)
        self.cache = ReleaseCache(home / "node" / "releases.db")
        self._engines: OrderedDict[tuple[object, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.sources = SourceResolver(home, self.registry)

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.close()
            self._engines.clear()
        self.cache.close()

    def _engine(self, sources: dict[str, str], kind: str = "duckdb") -> Any:
        key = (kind, *sorted(sources.items()))
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                return engine
            engine = DuckDBEngine(sources) if kind == "duckdb" else _spark_engine(sources)
            self._engines[key] = engine
            while len(self._engines) > MAX_ENGINES:
                self._engines.popitem(last=False)[1].close()
            return engine

    def run(
        self,
        principal: Principal,
        contract_id: str,
        sql: str,
        *,
        epsilon: float | None = None,
        purpose: str | None = None,
        region: str = "CN",
    ) -> dict[str, Any]:
        """Answer ``sql`` under contract ``contract_id`` for ``principal`` (the consumer)."""
        ex = self.exchange
        contract = ex.read(principal, contracts.get_contract, contract_id)
        if principal.participant_id != contract.consumer_id:
            raise Forbidden(f"only the consumer of contract {contract_id} queries under it")
        if contract.state != ContractState.FINALIZED:
            raise PolicyViolation(f"contract {contract_id} is {contract.state.value}: no query is allowed")
        system = Principal.system()
        product = ex.read(system, get_product, contract.product_id)
        if product.kind != ProductKind.PRIVATE_ANALYTICS:
            raise PolicyViolation(
                f"contract {contract_id} is for a {product.kind.value} product, not private SQL"
            )
        terms = parse(contract.policy)
        if purpose is None:
            purpose = terms.purposes[0]
        if epsilon is not None and (isinstance(epsilon, bool) or not 0 < float(epsilon) <= 100):
            raise InvalidInput("epsilon must be in (0, 100]", field="epsilon")
        tables: dict[str, str] = product.terms.get("tables") or {}
        specs, sources, version = [], {}, []
        for name, rid in sorted(tables.items()):
            res = ex.read(system, get_resource, rid)
            snap = self.sources.snapshot(rid, res.fingerprint)  # any source family; refuses changed data
            specs.append(TableSpec(name, {c: t for c, t in res.schema}))
            sources[name] = str(snap.path)
            version.append(f"{rid}={res.fingerprint}")
        privacy = product.terms.get("privacy") or {}
        extra = dict(privacy.get("rules") or {})
        unit = terms.privacy_unit or privacy.get("privacy_unit")
        try:
            rules = PrivacyRules(
                privacy_unit=unit,
                min_group_size=max(terms.min_group_size or 1, int(extra.pop("min_group_size", 1))),
                **_rule_kwargs(extra),
            )
        except TypeError as exc:
            raise InvalidInput(
                f"product {product.id} has unusable privacy rules: {exc}", field="privacy"
            ) from None
        q = compile_query(sql, ProductSchema.of(*specs), rules, epsilon=epsilon or DEFAULT_EPSILON)
        data_version = hashlib.sha256("\n".join(version).encode()).hexdigest()
        key = f"{contract_id}:{q.digest}:{data_version}"
        cached = self.cache.get(key)
        if cached is not None:
            now = ex.read(principal, contracts.get_contract, contract_id)
            left = None if terms.privacy_budget is None else terms.privacy_budget - now.budget_spent
            uses_left = None if terms.max_uses is None else terms.max_uses - now.uses
            return {**cached, "cached": True, "charged": 0.0, "budget_left": left, "uses_left": uses_left}
        exact = self._engine(sources, choose_engine(ex.settings.node_engine, product.terms)).run(q)
        cost = q.cost.epsilon if q.cost.epsilon is not None else (q.cost.rho or 0.0)
        use = ex.run(
            principal,
            contracts.record_use,
            contract_id,
            render=lambda u: {"use": u},
            operation="dv:aggregateQuery",
            purpose=purpose,
            region=region,
            privacy_cost=float(cost),
            request_digest=q.digest if q.digest.startswith("sha256:") else "sha256:" + q.digest,
            min_group_size=rules.min_group_size,
            node_key=hashlib.sha256(key.encode()).hexdigest(),
        )
        u = use.body["use"]
        answer = release(q, exact).to_dict()
        body = {
            "contract_id": contract_id,
            "use_id": u.id,
            "receipt_index": use.receipts[0]["index"] if use.receipts else None,
            **answer,
            "mechanism": q.cost.mechanism,
            "epsilon": q.cost.epsilon,
            "min_group_size": rules.min_group_size,
            "budget_left": u.budget_left,
            "uses_left": u.uses_left,
            "data_version": data_version,
        }
        self.cache.put(key, body)
        return {**body, "cached": False, "charged": float(cost)}
