"""PSI sessions bound to exchange contracts: the node's authoriser, peer keys, data and noise hooks.

:mod:`datavalley.psi` runs the protocol (docs/PSI.md) against four hooks; this module implements them
over the exchange's API (a node talks to the exchange with its participant's token, through
:class:`~datavalley.client.Client`):

* :class:`ExchangeAuthoriser` — a session needs a FINALIZED, unsuspended contract for a
  ``set_intersection`` product between this participant and the peer; the stored ODRL policy is
  evaluated (dry run) before anything is computed, and the session is metered with
  :func:`~datavalley.market.contracts.record_use` (docs/PROTOCOL.md §7);
* :class:`ExchangePeers` — the peer's newest unrevoked Ed25519 key, as registered at the exchange;
* :class:`RegistryDataSource` — the provider's registered resource (any source family, through
  :mod:`datavalley.node.sources`), pre-aggregated per normalised ID, refused when it is no longer the
  registered version;
* :func:`dp_release` — the aggregate release (discrete Laplace through :mod:`datavalley.privacy.noise`).

Metering (one use per session, charged once, attested by the other side):

* Both nodes call ``record_use`` with ``node_key = "psi:<session>"``: the first call records and charges,
  the second becomes the other party's attestation (``contract.use_attested``). The request digest is the
  session transcript (equal on both sides of an honest run, so the attestation exists only when the two
  transcripts agree) — except in ``aggregate`` mode, where the provider must reserve the privacy budget
  *before* the release, when the transcript is not final yet: there both sides use
  :func:`session_digest` (contract, session, mode).
* ``aggregate``: the provider's release hook reserves (records) the use and its ε first and only then
  adds noise, so a refused reservation (budget exhausted, contract suspended meanwhile) releases nothing.
  A released aggregate stays charged whatever happens to the session afterwards.
* ``cardinality``/``intersection``: a completed session is charged. A session that fails or expires is
  not, unless the responder had already served the complete output material (all of its blinded set and
  the tags for the initiator's whole declared set): the initiator then holds everything it needs to
  compute the output, and abandoning the session must not make it free. The responder charges it.
* Every usage, charged or not, is appended to the node's own usage log (JSONL, if configured): counts and
  digests only, the node's evidence in a dispute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import APIRouter, FastAPI

from datavalley.canonical import canonical_json
from datavalley.client import Client
from datavalley.errors import (
    BudgetExhausted,
    Conflict,
    DatavalleyError,
    Forbidden,
    NotFound,
    PolicyViolation,
    Unauthenticated,
)
from datavalley.identity.model import ParticipantKey
from datavalley.keys import decode_public_key, public_key_b64
from datavalley.market.model import Contract, ContractState, Product, ProductKind, Use
from datavalley.market.policy import UseRequest, UseState, evaluate, parse
from datavalley.node.registry import NodeRegistry
from datavalley.node.sources import AggregatedDataset, PsiAggregate, SourceResolver, psi_aggregates
from datavalley.privacy import noise
from datavalley.psi.datasets import CsvDataset, LinesDataset
from datavalley.psi.http import psi_router
from datavalley.psi.initiator import Responder, run_psi
from datavalley.psi.model import (
    Bounds,
    ExactAggregate,
    Grant,
    Mode,
    PsiDataset,
    PsiOutcome,
    PsiUsage,
    Release,
    ReleasedAggregate,
)
from datavalley.psi.normalise import IdKind
from datavalley.psi.responder import PsiNode
from datavalley.psi.suites import ELEMENT_BYTES, TAG_BYTES, Suite
from datavalley.psi.wire import sha256
from datavalley.psi.workers import Workers

__all__ = [
    "OPERATION",
    "PREFIX",
    "ContractResponder",
    "ExchangeAuthoriser",
    "ExchangePeers",
    "PsiTerms",
    "RegistryDataSource",
    "contract_responder",
    "dp_release",
    "release_scales",
    "responder_app",
    "run_contract_psi",
    "session_digest",
]

log = logging.getLogger(__name__)

OPERATION = "dv:intersect"  # the ODRL action of set_intersection contracts (ProductKind.action)
PREFIX = "/psi/v1"  # where a node mounts the PSI router (docs/PSI.md section 5)
MECHANISM = "discrete_laplace"

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def session_digest(contract_id: str, session_id: str, mode: Mode) -> str:
    """The request digest both nodes report for an ``aggregate`` session (see the module docstring)."""
    body = {"v": "dv-psi-use/1", "contract_id": contract_id, "session_id": session_id, "mode": mode.value}
    return sha256(canonical_json(body))


# --- what a contract says about PSI ---------------------------------------------------------------


@dataclass(frozen=True)
class PsiTerms:
    """A live PSI contract as this node reads it: the parties, the agreed use and the product's terms."""

    contract: Contract
    product_id: str
    resource_id: str
    purpose: str
    id_column: str
    id_kind: IdKind
    columns: Mapping[str, Bounds]
    epsilon_per_session: float | None
    aggregates: Mapping[str, PsiAggregate] = field(default_factory=dict)

    def definitions(self) -> dict[str, str]:
        """What each value of a released aggregate is (docs/PSI.md, "Aggregates")."""
        out = {"count": f"number of distinct matched IDs ({self.id_kind.value} in {self.id_column!r})"}
        out.update({name: agg.describe() for name, agg in self.aggregates.items()})
        return out

    @property
    def provider(self) -> str:
        return self.contract.provider_id

    @property
    def consumer(self) -> str:
        return self.contract.consumer_id

    def privacy_cost(self, mode: Mode) -> float:
        """ε one session of ``mode`` spends: the product's ε per session in aggregate mode, else 0."""
        if mode is not Mode.AGGREGATE:
            return 0.0
        if self.epsilon_per_session is None:
            raise PolicyViolation(
                f"contract {self.contract.id}: product {self.product_id} sets no ε per session "
                "(terms.privacy.epsilon_per_session), so it releases no aggregates",
                contract=self.contract.id,
            )
        return self.epsilon_per_session


def _psi_terms(contract: Contract, product: Product) -> PsiTerms:
    if product.kind is not ProductKind.SET_INTERSECTION:
        raise PolicyViolation(
            f"contract {contract.id} is for a {product.kind.value} product, not set_intersection",
            contract=contract.id,
        )
    if len(product.resource_ids) != 1:
        raise PolicyViolation(
            f"product {product.id} rests on {len(product.resource_ids)} resources; a PSI product "
            "matches exactly one",
            contract=contract.id,
        )
    psi = product.terms.get("psi") or {}
    privacy = product.terms.get("privacy") or {}
    per_session = privacy.get("epsilon_per_session")
    return PsiTerms(
        contract=contract,
        product_id=product.id,
        resource_id=product.resource_ids[0],
        purpose=parse(contract.policy).purposes[0],
        id_column=str(psi["id_column"]),
        id_kind=IdKind(psi["id_kind"]),
        columns={str(c): Bounds(int(lo), int(hi)) for c, (lo, hi) in (psi.get("columns") or {}).items()},
        epsilon_per_session=None if per_session is None else float(per_session),
        aggregates=psi_aggregates(psi),
    )


# --- the authoriser ---------------------------------------------------------------------------------


class ExchangeAuthoriser:
    """A :class:`~datavalley.psi.PsiAuthoriser` over the exchange's contracts, for ``participant_id``.

    ``usage_log`` (optional) receives every session's :class:`PsiUsage` as one JSON line, with whether it
    was charged, the use it was recorded as, and the exchange's error if recording failed. ``region`` is
    where this node computes (ODRL ``spatial``).
    """

    def __init__(
        self,
        client: Client,
        participant_id: str,
        *,
        region: str = "CN",
        usage_log: Path | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.client = client
        self.participant_id = participant_id
        self.region = region
        self.usage_log = usage_log
        self.clock = clock
        self._lock = threading.Lock()

    def terms(self, contract_id: str) -> PsiTerms:
        """The contract and its product's PSI terms (raises :class:`NotFound` if not this node's)."""
        contract = self.client.get_contract(contract_id)
        if self.participant_id not in (contract.provider_id, contract.consumer_id):
            # an operator's or auditor's token sees every contract; a node acts only for its party
            raise NotFound(f"contract {contract_id} does not exist", contract_id=contract_id)
        return _psi_terms(contract, self.client.get_product(contract.product_id))

    def authorise(self, contract_id: str, peer: str, mode: Mode, set_size: int) -> Grant:
        """The grant for a session with ``peer``: the policy's dry run, nothing recorded.

        Raises :class:`NotFound` (no such contract for this participant), :class:`Forbidden` (``peer`` is
        not the other party), :class:`PolicyViolation` (not live, suspended, not a PSI product, or the
        ODRL policy refuses: every failed constraint is named) and :class:`BudgetExhausted` (the ε left is
        less than a session's; as ``record_use`` answers, an exhausted use count is a policy violation).
        """
        t = self.terms(contract_id)
        c = t.contract
        other = c.consumer_id if self.participant_id == c.provider_id else c.provider_id
        if peer != other:
            raise Forbidden(
                f"contract {contract_id} is between {c.provider_id} and {c.consumer_id}; "
                f"participant {peer} is not a party to it",
                contract=contract_id,
                peer=peer,
            )
        # rights, registration and participant status at the exchange, before anything is computed
        self.client.check_use(contract_id, purpose=t.purpose, region=self.region)
        if c.state is not ContractState.FINALIZED:
            raise PolicyViolation(
                f"contract {contract_id} is {c.state.value}: no PSI session is allowed", contract=contract_id
            )
        if c.suspended:
            raise PolicyViolation(
                f"contract {contract_id} is suspended: no PSI session until it is resumed",
                contract=contract_id,
            )
        request = UseRequest(
            action=OPERATION,
            purpose=t.purpose,
            region=self.region,
            at=self.clock(),
            privacy_cost=t.privacy_cost(mode),
            mode=mode.value,
        )
        decision = evaluate(c.policy, request, UseState(c.uses, c.budget_spent, c.quantity))
        if not decision.allowed:
            reasons = list(decision.failed)
            if decision.over_budget:  # as record_use answers: ε alone is over budget
                raise BudgetExhausted(
                    f"contract {contract_id} refuses a {mode.value} PSI session: " + "; ".join(reasons),
                    contract=contract_id,
                    reasons=reasons,
                    budget_left=decision.budget_left,
                )
            raise PolicyViolation(
                f"contract {contract_id} refuses a {mode.value} PSI session: " + "; ".join(reasons),
                contract=contract_id,
                reasons=reasons,
            )
        from datavalley.crossborder.node import preflight

        preflight(self.client, contract_id, OPERATION, mode.value)  # cross-border check before data moves
        provider = self.participant_id == c.provider_id
        return Grant(
            contract_id=contract_id,
            mode=mode,
            receiver=c.consumer_id,
            dataset=t.resource_id if provider else "",
            columns=dict(t.columns) if provider and mode is Mode.AGGREGATE else {},
            definitions=t.definitions() if provider and mode is Mode.AGGREGATE else {},
        )

    def _digest(self, usage: PsiUsage) -> str:
        if usage.mode is Mode.AGGREGATE:
            return session_digest(usage.contract_id, usage.session_id, usage.mode)
        return usage.transcript

    @staticmethod
    def charged(usage: PsiUsage) -> bool:
        """Whether ``usage`` is a use of the contract (the rule in the module docstring)."""
        if usage.mode is Mode.AGGREGATE:
            return usage.release is not None or usage.outcome == "completed"
        if usage.outcome == "completed":
            return True
        if usage.role != "responder":
            return False
        served = ELEMENT_BYTES * usage.local_set_size + TAG_BYTES * (usage.peer_set_size or 0)
        return usage.bytes_sent >= served

    def _use(self, terms: PsiTerms, session_id: str, mode: Mode, digest: str, cost: float) -> Use:
        return self.client.record_use(
            terms.contract.id,
            operation=OPERATION,
            purpose=terms.purpose,
            region=self.region,
            mode=mode.value,
            privacy_cost=cost,
            request_digest=digest,
            node_key=f"psi:{session_id}",
            quantity=1,
        ).value

    def record(self, usage: PsiUsage) -> None:
        """Meter a finished session: record (or attest) its use if it is charged, and log it locally.

        For a completed session, raises what ``record_use`` raises (:class:`PolicyViolation`,
        :class:`BudgetExhausted`, :class:`Unavailable`): the responder's refusal then reaches the
        initiator as the session's error. A failed or expired session is recorded best effort (an expiry
        is noticed while serving another peer's request, which must not fail for it): an error is logged.
        """
        use_id: str | None = None
        error: DatavalleyError | None = None
        charged = self.charged(usage)
        try:
            if charged:
                terms = self.terms(usage.contract_id)
                cost = terms.privacy_cost(usage.mode) if usage.release is not None else 0.0
                use_id = self._use(terms, usage.session_id, usage.mode, self._digest(usage), cost).id
        except DatavalleyError as exc:
            error = exc
            if usage.outcome == "completed":
                raise
            log.warning("PSI session %s (%s) could not be recorded: %s", usage.session_id, usage.outcome, exc)
        finally:
            self._log(usage, charged, use_id, error)

    def reserve(self, exact: ExactAggregate) -> float:
        """Record the session's use and its ε at the exchange before anything is released; returns ε.

        Raises :class:`BudgetExhausted` or :class:`PolicyViolation`: then nothing may be released.
        """
        terms = self.terms(exact.contract_id)
        # With no column to sum, nothing is noised (the count is the consumer's own knowledge): no ε.
        epsilon = terms.privacy_cost(Mode.AGGREGATE) if exact.sums else 0.0
        digest = session_digest(exact.contract_id, exact.session_id, Mode.AGGREGATE)
        self._use(terms, exact.session_id, Mode.AGGREGATE, digest, epsilon)
        return epsilon

    def release(self, exact: ExactAggregate) -> ReleasedAggregate:
        """The provider's release hook: :meth:`reserve` first, then :func:`dp_release` with that ε."""
        return dp_release(self.reserve(exact))(exact)

    def _log(self, usage: PsiUsage, charged: bool, use_id: str | None, error: DatavalleyError | None) -> None:
        if self.usage_log is None:
            return
        entry = {**usage.to_dict(), "charged": charged, "use_id": use_id, "error": error and error.to_dict()}
        line = json.dumps(entry, ensure_ascii=False)
        with self._lock:
            self.usage_log.parent.mkdir(parents=True, exist_ok=True)
            with self.usage_log.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")


# --- peers ------------------------------------------------------------------------------------------


class ExchangePeers:
    """A :class:`~datavalley.psi.PeerDirectory` over the exchange: each participant's newest unrevoked key.

    Keys are cached for ``ttl`` seconds, so a revoked key is still accepted for at most that long.
    """

    def __init__(self, client: Client, *, ttl: float = 60.0) -> None:
        self.client = client
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Ed25519PublicKey]] = {}
        self._lock = threading.Lock()

    def public_key(self, participant: str) -> Ed25519PublicKey:
        """The key ``participant`` signs with (raises :class:`Unauthenticated` if it has none)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(participant)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            key = self._fetch(participant)
        else:
            # psi_router verifies signatures on its event loop: a blocking exchange call (or the SDK's
            # in-process transport, which runs its own loop) must not run on that thread
            with ThreadPoolExecutor(1, thread_name_prefix="psi-peers") as pool:
                key = pool.submit(self._fetch, participant).result()
        with self._lock:
            self._cache[participant] = (now, key)
        return key

    def _fetch(self, participant: str) -> Ed25519PublicKey:
        keys: list[ParticipantKey] = []
        cursor = None
        try:
            while True:
                page = self.client.list_keys(participant, cursor=cursor, limit=50)
                keys.extend(k for k in page.items if k.revoked_at is None)
                cursor = page.next_cursor
                if cursor is None:
                    break
        except NotFound:
            raise Unauthenticated(
                f"peer {participant!r} is not a known participant", peer=participant
            ) from None
        if not keys:
            raise Unauthenticated(
                f"participant {participant} has no registered, unrevoked key", peer=participant
            )
        newest = max(keys, key=lambda k: k.id)  # IDs sort by creation, as the exchange's active_key
        return decode_public_key(newest.public_key)


def check_own_key(peers: ExchangePeers, participant: str, key: Ed25519PrivateKey) -> None:
    """Raise :class:`Conflict` unless ``key`` is ``participant``'s registered key (peers would refuse it)."""
    registered = public_key_b64(peers.public_key(participant))
    if registered != public_key_b64(key):
        raise Conflict(
            f"the signing key is not participant {participant}'s registered key "
            f"(registered: {registered[:12]}…); peers would refuse its signatures",
            participant=participant,
        )


# --- data -------------------------------------------------------------------------------------------


class RegistryDataSource:
    """A :class:`~datavalley.psi.PsiDataSource`: the registered resource behind a grant, of any source
    family (:mod:`datavalley.node.sources`), pre-aggregated per normalised ID.

    The data must still be the registered version (its ``dvfp1`` fingerprint equals the resource's), as
    for private SQL: a contract covers registered data only.
    """

    def __init__(self, registry: NodeRegistry, client: Client, *, home: Path | None = None) -> None:
        self.registry = registry
        self.client = client
        self.sources = SourceResolver(home or registry.path.parent.parent, registry)

    def open(self, grant: Grant) -> PsiDataset:
        """The dataset for ``grant`` (raises :class:`NotFound`, or :class:`Conflict` when it changed)."""
        rid = grant.dataset
        contract = self.client.get_contract(grant.contract_id)
        terms = _psi_terms(contract, self.client.get_product(contract.product_id))
        if terms.resource_id != rid:
            raise Conflict(f"contract {grant.contract_id} matches resource {terms.resource_id}, not {rid}")
        resource = self.client.get_resource(rid)
        if resource.status.value != "registered":
            raise Conflict(f"resource {rid} is {resource.status.value}: its data is not offered now")
        snap = self.sources.snapshot(rid, resource.fingerprint)
        return AggregatedDataset(snap, terms.id_column, terms.id_kind, terms.aggregates)


# --- differential privacy ---------------------------------------------------------------------------


def release_scales(epsilon: float, bounds: Mapping[str, Bounds]) -> dict[str, tuple[int, float, float]]:
    """``{column: (sensitivity, scale, ε spent)}`` of :func:`dp_release` with ``epsilon``.

    The COUNT is not noised: the consumer computes ``|X ∩ Y|`` itself in the protocol (docs/PSI.md §4)
    and sends it, so noise on it would spend budget hiding a number the consumer already knows. ε is
    split equally between the sums (basic composition). Adding or removing one ID changes a sum by at
    most ``max(|low|, |high|)`` of its clamp bounds.
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    out: dict[str, tuple[int, float, float]] = {}
    if not bounds:
        return out
    share = epsilon / len(bounds)
    for name, sensitivity in [(c, max(abs(b.lower), abs(b.upper), 1)) for c, b in sorted(bounds.items())]:
        scale, cost = noise.calibrate("laplace", sensitivity, share)
        out[name] = (sensitivity, scale, cost)
    return out


def dp_release(epsilon: float) -> Release:
    """A release hook adding OpenDP discrete Laplace noise to each sum, spending ``epsilon`` on the sums.

    The count is released as computed: the consumer already knows it exactly (it is the one that sent
    it). It does not meter: a node's hook reserves the budget first (:meth:`ExchangeAuthoriser.release`).
    """

    def release(exact: ExactAggregate) -> ReleasedAggregate:
        plan = release_scales(epsilon, exact.bounds)
        sums = {c: noise.sample("laplace", plan[c][1], [v])[0] for c, v in exact.sums.items()}
        return ReleasedAggregate(exact.count, sums, f"{MECHANISM}(epsilon={epsilon:g})", exact.definitions)

    return release


# --- assembling a node ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContractResponder:
    """A node's PSI responder: the :class:`PsiNode`, its router, and the hooks it runs on."""

    participant: str
    node: PsiNode
    router: APIRouter
    authoriser: ExchangeAuthoriser
    peers: ExchangePeers


def contract_responder(
    *,
    participant: str,
    signing_key: Ed25519PrivateKey,
    client: Client,
    registry: NodeRegistry,
    workdir: Path,
    workers: Workers | None = None,
    usage_log: Path | None = None,
    region: str = "CN",
    authoriser: ExchangeAuthoriser | None = None,
    check_key: bool = True,
) -> ContractResponder:
    """The responder for ``participant``'s node: contracts, keys and data from the exchange via ``client``.

    ``authoriser`` replaces the default ``ExchangeAuthoriser(client, participant, region, usage_log)``
    (a subclass, say); its :meth:`~ExchangeAuthoriser.release` is the node's release hook.
    Raises :class:`Conflict` (``check_key``) if ``signing_key`` is not the participant's registered key.
    """
    peers = ExchangePeers(client)
    if check_key:
        check_own_key(peers, participant, signing_key)
    if authoriser is None:
        authoriser = ExchangeAuthoriser(client, participant, region=region, usage_log=usage_log)
    node = PsiNode(
        participant=participant,
        authoriser=authoriser,
        data=RegistryDataSource(registry, client),
        release=authoriser.release,
        workdir=workdir,
        workers=workers,
    )
    router = psi_router(node, signing_key=signing_key, peers=peers)
    return ContractResponder(participant, node, router, authoriser, peers)


def responder_app(responder: ContractResponder, *, prefix: str = PREFIX) -> FastAPI:
    """A FastAPI app serving ``responder`` under ``prefix`` (and ``GET /health``); workers live with it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        responder.node.workers.start()
        yield
        responder.node.close()

    app = FastAPI(title=f"datavalley PSI node {responder.participant}", lifespan=lifespan)
    app.include_router(responder.router, prefix=prefix)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "participant": responder.participant}

    return app


def run_contract_psi(
    client: Client,
    participant: str,
    signing_key: Ed25519PrivateKey,
    responder_url: str,
    contract_id: str,
    mode: Mode,
    ids: Path,
    workdir: Path,
    *,
    responder_participant: str | None = None,
    id_kind: IdKind | None = None,
    id_column: str | None = None,
    columns: tuple[str, ...] = (),
    suite: Suite = Suite.X25519,
    workers: Workers | None = None,
    usage_log: Path | None = None,
    region: str = "CN",
) -> PsiOutcome:
    """Run one session as ``participant`` (the contract's consumer) against the provider's node.

    ``ids`` is one ID per line, or a CSV file when ``id_column`` names its ID column. Defaults come from
    the contract: the responder is the other party, ``id_kind`` the product's, and in aggregate mode
    ``columns`` every column the product allows. ``responder_url`` includes the router's prefix.

    Raises what :func:`~datavalley.psi.run_psi` raises; :class:`Conflict` if ``signing_key`` is not the
    participant's registered key.
    """
    from datavalley.node.psi_engine import contract_engine, run_contract_engine_psi  # imports spu's glue

    protocol = contract_engine(client, contract_id)
    if protocol is not None:  # the product runs on SecretFlow's engine (docs/PSI.md section 9)
        return run_contract_engine_psi(
            client,
            participant,
            signing_key,
            responder_url,
            contract_id,
            ids,
            workdir,
            protocol=protocol,
            mode=mode,
            responder_participant=responder_participant,
            id_kind=id_kind,
            id_column=id_column,
            usage_log=usage_log,
            region=region,
        )
    authoriser = ExchangeAuthoriser(client, participant, region=region, usage_log=usage_log)
    terms = authoriser.terms(contract_id)
    client.check_use(contract_id, purpose=terms.purpose, region=region)  # refused: nothing starts
    peer = responder_participant or (terms.provider if participant == terms.consumer else terms.consumer)
    peers = ExchangePeers(client)
    check_own_key(peers, participant, signing_key)
    kind = id_kind or terms.id_kind
    dataset: PsiDataset = (
        CsvDataset(ids, id_column, kind) if id_column is not None else LinesDataset(ids, kind)
    )
    if mode is Mode.AGGREGATE and not columns:
        columns = tuple(sorted(terms.columns))
    workdir.mkdir(parents=True, exist_ok=True)
    return run_psi(
        responder=Responder(responder_url, peer, peers.public_key(peer)),
        local=participant,
        signing_key=signing_key,
        authoriser=authoriser,
        dataset=dataset,
        contract_id=contract_id,
        mode=mode,
        workdir=workdir,
        suite=suite,
        columns=columns,
        workers=workers,
    )
