"""The node's private SQL service: a query checked against its contract and answered next to the data.

Order of operations (docs/PRIVATE_SQL.md, docs/PROTOCOL.md §8):

1. the contract must be the caller's, live, and for a private-analytics product;
2. the node's copy of each table must be the registered version (its fingerprint equals the resource's
   current fingerprint), else the query is refused — a contract covers registered data only;
3. the SQL is compiled under the product's privacy rules narrowed by the contract (minimum group size,
   privacy unit), grouping by a column classified as personal information is refused, and the compiled
   query is run once on empty relations of the same schema: every error up to here is independent of the
   data and nothing is spent;
4. the outcome of (contract, query digest, data version) is drawn once: the first request claims it in
   the node's durable release store, concurrent identical requests wait for that one outcome, and a repeat
   returns it at no cost — averaging repeated answers gains nothing;
5. the claimant records the use at the exchange (:func:`datavalley.market.contracts.record_use`: policy
   check and atomic reservation of ε and δ) — if that is refused, nothing is released or stored;
6. the exact aggregates are computed in the locked-down engine (they never leave the node); any failure
   on the real data (time, memory or size limit, engine error) becomes one generic error, stays charged
   and is stored as the outcome, so success, error text and cost do not depend on the data;
7. noise is added, groups are suppressed, the release is persisted durably and only then returned. If a
   stored outcome is lost (the store deleted, or the node died before storing it), a repeat is a new
   draw and is charged as a new query.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datavalley.errors import (
    Conflict,
    DatavalleyError,
    Forbidden,
    InvalidInput,
    PolicyViolation,
)
from datavalley.exchange import Exchange
from datavalley.identity.model import Principal, Role
from datavalley.market import contracts
from datavalley.market.governance import check_contract_use
from datavalley.market.model import ContractState, ProductKind
from datavalley.market.policy import parse
from datavalley.market.products import get_product
from datavalley.node.registry import NodeRegistry
from datavalley.node.sources import SourceResolver, choose_engine
from datavalley.privacy import DuckDBEngine, PrivacyRules, ProductSchema, TableSpec, compile_query, release
from datavalley.privacy.compiler import CompiledQuery
from datavalley.privacy.engine import ExactResult
from datavalley.rights.registration import get_resource

log = logging.getLogger(__name__)

DEFAULT_EPSILON = 0.5
Executor = Callable[[CompiledQuery, dict[str, Any]], ExactResult]
MAX_ENGINES = 8


#: How long a claim on an outcome may stay pending before another request may take it over (and pay).
CLAIM_LEASE_S = 300.0
#: The most rows one answer releases (after noise); the rest are withheld and counted.
MAX_RELEASED_ROWS = 10_000
#: The most candidate groups an engine returns before noise. Beyond it the query fails on the data — the
#: one size limit that depends on the data, so it is far above MAX_RELEASED_ROWS and the failure is
#: charged like an answer.
ENGINE_MAX_GROUPS = 1_000_000
#: The one message of a query that failed on the real data (whatever the cause, so it says nothing). It is
#: raised as the base :class:`DatavalleyError` (``internal_error``): the query was valid, the node failed.
FAILED_MESSAGE = (
    "the query could not be completed on the data (an engine limit was reached); "
    "the use is charged and a repeat returns this same outcome"
)


class ReleaseStore:
    """Outcomes by (contract, query digest, data version) in ``NODE_HOME/node/releases.db`` (0600).

    Each key goes through ``pending`` (claimed by one request, with a random draw ID and a lease) to
    ``done`` (the released answer, or the generic failure). Writes are committed with ``synchronous=FULL``
    before the answer is returned. Requests for a pending key wait for it (in this process on a condition,
    across processes by polling); a claim whose lease ran out, or whose owner process on this host is
    gone, is taken over with a new draw ID — a new draw, charged as a new query.
    """

    def __init__(self, path: Path, *, lease_s: float = CLAIM_LEASE_S) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)
        self.lease_s = lease_s
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outcomes (key TEXT PRIMARY KEY, state TEXT NOT NULL, "
            "draw TEXT NOT NULL, owner TEXT NOT NULL, lease_until REAL NOT NULL, body TEXT)"
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    def _stale(self, owner: str, lease_until: float) -> bool:
        if time.time() > lease_until:
            return True
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if host != socket.gethostname() or not pid.isdigit() or owner == self.owner:
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def claim(self, key: str) -> tuple[str, Any]:
        """``("done", body)`` for a stored outcome, or ``("claimed", draw_id)`` for the caller to produce it.

        Waits while another request holds the claim.
        """
        deadline = time.time() + self.lease_s + 5.0
        with self._changed:
            while True:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute(
                        "SELECT state, owner, lease_until, body FROM outcomes WHERE key = ?", (key,)
                    ).fetchone()
                    if row is not None and row[0] == "done":
                        self._db.execute("COMMIT")
                        return "done", json.loads(row[3])
                    if row is None or self._stale(row[1], row[2]):
                        draw = secrets.token_hex(16)
                        self._db.execute(
                            "INSERT OR REPLACE INTO outcomes (key, state, draw, owner, lease_until, body) "
                            "VALUES (?, 'pending', ?, ?, ?, NULL)",
                            (key, draw, self.owner, time.time() + self.lease_s),
                        )
                        self._db.execute("COMMIT")
                        return "claimed", draw
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                if time.time() > deadline:
                    raise Conflict("this query is still being answered; retry shortly", retry_after=5)
                self._changed.wait(0.05)

    def finish(self, key: str, draw: str, body: dict[str, Any]) -> None:
        """Store the outcome of claim ``draw`` durably (committed before this returns)."""
        with self._changed:
            self._db.execute(
                "UPDATE outcomes SET state = 'done', body = ? WHERE key = ? AND draw = ?",
                (json.dumps(body), key, draw),
            )
            self._changed.notify_all()

    def abandon(self, key: str, draw: str) -> None:
        """Drop claim ``draw`` (nothing was charged or released): a waiting request may claim anew."""
        with self._changed:
            self._db.execute(
                "DELETE FROM outcomes WHERE key = ? AND draw = ? AND state = 'pending'", (key, draw)
            )
            self._changed.notify_all()

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
        self.store = ReleaseStore(home / "node" / "releases.db")
        self._engines: OrderedDict[tuple[object, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.sources = SourceResolver(home, self.registry)

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.close()
            self._engines.clear()
        self.store.close()

    def _engine(self, sources: dict[str, str], kind: str = "duckdb") -> Any:
        key = (kind, *sorted(sources.items()))
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                return engine
            engine = (
                DuckDBEngine(sources, max_rows=ENGINE_MAX_GROUPS)
                if kind == "duckdb"
                else _spark_engine(sources)
            )
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
        if not principal.has(Role.CONSUMER):
            raise Forbidden("querying under a contract needs the consumer role (this token lacks it)")
        # rights and status before anything is computed or served from the cache (re-checked when metered)
        wanted = purpose or parse(contract.policy).purposes[0]
        ex.read(principal, check_contract_use, contract_id, purpose=wanted, region=region)
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
        personal: dict[str, frozenset[str]] = {}
        for name, rid in sorted(tables.items()):
            res = ex.read(system, get_resource, rid)
            snap = self.sources.snapshot(rid, res.fingerprint)  # any source family; refuses changed data
            specs.append(TableSpec(name, {c: t for c, t in res.schema}))
            personal[name] = frozenset(
                str(c.get("column"))
                for c in (res.pii or {}).get("columns") or []
                if isinstance(c, dict) and c.get("personal", True)
            )
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
        for key_col in q.plan.keys:
            if key_col.column in personal.get(key_col.table, ()):
                raise PolicyViolation(
                    f"GROUP BY {key_col.column} is not allowed: the column is classified as personal "
                    "information, and its values would be released as group keys",
                    rule="personal_information",
                    column=key_col.column,
                )
        engine = self._engine(sources, choose_engine(ex.settings.node_engine, product.terms))
        engine.check(q)  # on empty relations: data-independent errors, nothing spent
        data_version = hashlib.sha256("\n".join(version).encode()).hexdigest()
        key = f"{contract_id}:{q.digest}:{data_version}"
        state, value = self.store.claim(key)
        if state == "done":
            return self._repeat(principal, contract_id, terms, value)
        draw = str(value)
        cost = q.cost.epsilon if q.cost.epsilon is not None else (q.cost.rho or 0.0)
        try:
            use = ex.run(
                principal,
                contracts.record_use,
                contract_id,
                render=lambda u: {"use": u},
                operation="dv:aggregateQuery",
                purpose=purpose,
                region=region,
                privacy_cost=float(cost),
                privacy_delta=float(q.cost.delta),
                request_digest=q.digest if q.digest.startswith("sha256:") else "sha256:" + q.digest,
                min_group_size=rules.min_group_size,
                node_key=f"sql:{draw}",
            )
        except BaseException:
            self.store.abandon(key, draw)  # refused: nothing charged, nothing stored
            raise
        u = use.body["use"]
        meta = {
            "contract_id": contract_id,
            "use_id": u.id,
            "receipt_index": use.receipts[0]["index"] if use.receipts else None,
            "mechanism": q.cost.mechanism,
            "epsilon": q.cost.epsilon,
            "delta": q.cost.delta,
            "min_group_size": rules.min_group_size,
            # Data-independent: the bounds, not the (data-dependent) number of rows they dropped.
            "contribution_bounds": {
                "privacy_unit": rules.privacy_unit,
                "max_rows_per_unit_and_group": q.rows_per_unit,
                "groups_per_unit": q.groups_per_unit,
                "dropped_rows": "rows a unit contributes beyond these bounds are dropped before noise; "
                "droppedRows gives their noisy number (each unit's counted up to m·g)",
            },
            "budget_left": u.budget_left,
            "uses_left": u.uses_left,
            "data_version": data_version,
        }
        try:
            if executor is None:
                exact = engine.run(q)
            else:  # a compute pool runs the same compiled plan (datavalley.compute)
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
            answer = release(q, exact, max_rows=MAX_RELEASED_ROWS).to_dict()
        except Exception:
            # Charged already; the cause (limit, engine error) stays in the node's logs, never in the
            # answer: the stored outcome is one generic failure.
            log.exception("private query %s failed on the data", q.digest)
            self.store.finish(key, draw, {**meta, "failed": True})
            raise DatavalleyError(FAILED_MESSAGE, charged=float(cost), use_id=u.id) from None
        body = {**meta, **answer}
        self.store.finish(key, draw, body)  # durable before it is released
        return {**body, "cached": False, "charged": float(cost)}

    def _repeat(
        self, principal: Principal, contract_id: str, terms: Any, body: dict[str, Any]
    ) -> dict[str, Any]:
        if body.get("failed"):
            raise DatavalleyError(FAILED_MESSAGE, charged=0.0, use_id=body.get("use_id"))
        now = self.exchange.read(principal, contracts.get_contract, contract_id)
        left = None if terms.privacy_budget is None else terms.privacy_budget - now.budget_spent
        uses_left = None if terms.max_uses is None else terms.max_uses - now.uses
        return {**body, "cached": True, "charged": 0.0, "budget_left": left, "uses_left": uses_left}
