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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyViolation
from datavalley.exchange import Exchange
from datavalley.identity.model import Principal
from datavalley.market import contracts
from datavalley.market.model import ContractState, ProductKind
from datavalley.market.policy import parse
from datavalley.market.products import get_product
from datavalley.node.registry import FingerprintCache, NodeRegistry
from datavalley.privacy import DuckDBEngine, PrivacyRules, ProductSchema, TableSpec, compile_query, release
from datavalley.privacy.compiler import CompiledQuery
from datavalley.privacy.engine import ExactResult
from datavalley.rights.registration import get_resource

DEFAULT_EPSILON = 0.5
Executor = Callable[[CompiledQuery, dict[str, Any]], ExactResult]
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


class QueryService:
    """Private SQL on this node's registered data, metered against the exchange's contracts."""

    def __init__(self, exchange: Exchange, home: Path | None = None) -> None:
        self.exchange = exchange
        home = home or exchange.settings.home
        self.registry = NodeRegistry(home)
        self.cache = ReleaseCache(home / "node" / "releases.db")
        self._engines: OrderedDict[tuple[tuple[str, str], ...], DuckDBEngine] = OrderedDict()
        self._lock = threading.Lock()
        self._fingerprints = FingerprintCache()

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.close()
            self._engines.clear()
        self.cache.close()

    def _engine(self, sources: dict[str, str]) -> DuckDBEngine:
        key = tuple(sorted(sources.items()))
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                return engine
            engine = DuckDBEngine(sources)
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
        executor: Executor | None = None,
    ) -> dict[str, Any]:
        """Answer ``sql`` under contract ``contract_id`` for ``principal`` (the consumer).

        ``executor`` runs the exact step elsewhere (a compute pool's worker, ``datavalley.compute``); it
        gets the compiled query and what is needed to recompile and run it, and returns the exact result.
        """
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
            try:
                loc = self.registry.get(rid)
            except NotFound:
                raise Conflict(
                    f"resource {rid} is not held by this node; its data cannot be queried here"
                ) from None
            if loc.kind != "file":
                raise Conflict(f"resource {rid} lives in a database; private SQL runs on file sources here")
            current = self._fingerprints.current(loc.location, loc.format)
            if current != res.fingerprint:
                raise Conflict(
                    f"the node's copy of resource {rid} is not the registered version "
                    f"({current[:20]}… ≠ {res.fingerprint[:20]}…): register the change first"
                )
            specs.append(TableSpec(name, {c: t for c, t in res.schema}))
            sources[name] = loc.location
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
        if executor is None:
            exact = self._engine(sources).run(q)
        else:
            exact = executor(
                q,
                {
                    "sql": sql,
                    "tables": specs,
                    "sources": sources,
                    "rules": rules,
                    "epsilon": epsilon or DEFAULT_EPSILON,
                },
            )
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
