"""Jobs: submission with registry-derived data constraints, placement rounds, metering and settlement.

Data constraints are *derived* from the registry, never declared by the submitter
(:func:`data_constraints`): the resources behind the job's data contract give the grade and whether
personal information is present; the data's province is the province of the holding provider's
registered unified social credit code (its administrative division). Then

- core data never moves: no pool may run the job (it stays on its own node);
- important data stays in its province: only pools in that province;
- personal information stays in the country (no cross-border pathway is modelled): domestic pools only
  — every cluster of the topology is domestic, so this never excludes one today;
- anything else may run on any pool the consumer holds a live contract on.

A job's metered use (core-seconds × the pool's price per core-hour) is recorded on the consumer's pool
contract with :func:`datavalley.market.contracts.record_use` — the same escrow release, exchange fee,
statement lines and ledger receipts as any data product — with the energy and emissions alongside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select

from datavalley.canonical import digest
from datavalley.compute import topology
from datavalley.compute.pools import to_pool
from datavalley.compute.scheduler import JobSpec, schedule_round
from datavalley.compute.tables import ComputeJobRow, ComputePoolRow
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyViolation
from datavalley.exchange import Context
from datavalley.identity.model import Role
from datavalley.identity.tables import ParticipantRow
from datavalley.market.model import ContractState
from datavalley.market.tables import ContractRow, ProductRow
from datavalley.rights.model import Grade
from datavalley.rights.registration import oversees
from datavalley.rights.tables import ResourceRow
from datavalley.store.base import new_id
from datavalley.store.pages import Page, paginate

JOB_KINDS = ("private_sql",)
LATENCY_CLASSES = {"interactive": 10.0, "batch": None}  # one-way ms bound (modelled)
CARBON_WEIGHT = 100.0  # λ, fen per kgCO2 (a shadow price of 1,000 CNY/t; docs/COMPUTE.md)
HORIZON_H = 48
LOCAL_OFFSET = timedelta(hours=8)  # hours of day are China Standard Time


@dataclass(frozen=True)
class Job:
    id: str
    consumer_id: str
    kind: str
    contract_id: str
    cores: int
    memory_gb: int
    duration_s: int
    latency_class: str
    deadline: datetime
    constraints: dict[str, Any]
    status: str
    pool_id: str | None
    pool_contract_id: str | None
    start_at: datetime | None
    placement: dict[str, Any] | None
    core_seconds: int
    core_hours: float
    energy_kwh: float
    kg_co2: float
    amount: int
    use_id: str | None
    result_digest: str | None
    error: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for k in ("deadline", "start_at", "created_at"):
            d[k] = None if d[k] is None else d[k].isoformat()
        return d


def to_job(r: ComputeJobRow) -> Job:
    return Job(
        r.id,
        r.consumer_id,
        r.kind,
        r.contract_id,
        r.cores,
        r.memory_gb,
        r.duration_s,
        r.latency_class,
        r.deadline,
        dict(r.constraints),
        r.status,
        r.pool_id,
        r.pool_contract_id,
        r.start_at,
        r.placement,
        r.core_seconds,
        round(r.core_seconds / 3600.0, 6),
        r.energy_kwh,
        r.kg_co2,
        r.amount,
        r.use_id,
        r.result_digest,
        r.error,
        r.created_at,
    )


def data_constraints(ctx: Context, contract: ContractRow) -> dict[str, Any]:
    """Where a job on ``contract``'s data may run, derived from the registry (module docstring)."""
    product = ctx.session.get(ProductRow, contract.product_id)
    assert product is not None
    holder = ctx.session.get(ParticipantRow, product.provider_id)
    province = (
        topology.province_of_registry_id(holder.registry_id) if holder and holder.country == "CN" else None
    )
    grades, pi = [], False
    for rid in product.resource_ids:
        r = ctx.session.get(ResourceRow, rid)
        if r is not None:
            grades.append(r.effective_grade)
            pi = pi or bool(r.pii_present)
    out: dict[str, Any] = {
        "data_province": province,
        "grades": sorted(set(grades)),
        "personal_information": pi,
        "resources": list(product.resource_ids),
    }
    if Grade.CORE.value in grades:
        out |= {"allowed_provinces": [], "rule": "core data never moves: it is computed on its own node only"}
    elif Grade.IMPORTANT.value in grades:
        if province is None:
            out |= {"allowed_provinces": [], "rule": "important data stays in its province, which is unknown"}
        else:
            out |= {"allowed_provinces": [province], "rule": f"important data stays in {province}"}
    elif pi:
        out |= {"allowed_provinces": None, "rule": "personal information stays in the country"}
    else:
        out |= {"allowed_provinces": None, "rule": "general data: any domestic pool"}
    return out


def submit_job(
    ctx: Context,
    *,
    contract_id: str,
    kind: str = "private_sql",
    sql: str,
    epsilon: float | None = None,
    cores: int = 1,
    memory_gb: int = 1,
    duration_s: int = 60,
    latency_class: str = "batch",
    deadline_h: int | None = None,
) -> Job:
    """A consumer submits a job under one of its data contracts; it is placed at once (one round)."""
    ctx.require(Role.CONSUMER, action="submitting a compute job")
    me = ctx.principal.participant_id
    if kind not in JOB_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(JOB_KINDS)}", field="kind")
    if latency_class not in LATENCY_CLASSES:
        raise InvalidInput("latency_class must be interactive or batch", field="latency_class")
    if not isinstance(sql, str) or not sql.strip() or len(sql) > 100_000:
        raise InvalidInput("sql must be a non-empty query of at most 100,000 characters", field="sql")
    if epsilon is not None and (
        isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 < epsilon <= 100
    ):
        raise InvalidInput("epsilon must be in (0, 100]", field="epsilon")
    for name, v, hi in (
        ("cores", cores, 4096),
        ("memory_gb", memory_gb, 65536),
        ("duration_s", duration_s, 7 * 86400),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise InvalidInput(f"{name} must be an integer between 1 and {hi}", field=name)
    dur_h = math.ceil(duration_s / 3600)
    if deadline_h is None:
        deadline_h = dur_h if latency_class == "interactive" else min(HORIZON_H, dur_h + 24)
    if (
        isinstance(deadline_h, bool)
        or not isinstance(deadline_h, int)
        or not dur_h <= deadline_h <= HORIZON_H
    ):
        raise InvalidInput(
            f"deadline_h must be an integer between the duration ({dur_h} h) and {HORIZON_H}",
            field="deadline_h",
        )
    contract = ctx.session.get(ContractRow, contract_id)
    if contract is None or contract.consumer_id != me:
        raise NotFound(f"contract {contract_id} does not exist", contract_id=contract_id)
    if contract.state != ContractState.FINALIZED or contract.suspended:
        raise PolicyViolation(f"contract {contract_id} is not live: no job may run under it")
    product = ctx.session.get(ProductRow, contract.product_id)
    if product is None or product.kind != "private_analytics":
        raise PolicyViolation(f"contract {contract_id} is not for a private analytics product")
    row = ComputeJobRow(
        id=new_id("job"),
        consumer_id=me,
        kind=kind,
        contract_id=contract_id,
        spec={"sql": sql, "epsilon": None if epsilon is None else float(epsilon)},
        cores=cores,
        memory_gb=memory_gb,
        duration_s=duration_s,
        latency_class=latency_class,
        deadline=ctx.now + timedelta(hours=deadline_h),
        constraints=data_constraints(ctx, contract),
        status="submitted",
        pool_id=None,
        pool_contract_id=None,
        start_at=None,
        placement=None,
        core_seconds=0,
        energy_kwh=0.0,
        kg_co2=0.0,
        amount=0,
        use_id=None,
        result_digest=None,
        error=None,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    ctx.emit(
        "compute.job_submitted",
        [row.id, me, contract_id],
        {
            "id": row.id,
            "kind": kind,
            "cores": cores,
            "duration_s": duration_s,
            "rule": row.constraints["rule"],
            "sql": digest({"sql": sql}),
        },
    )
    _round(ctx, [row])
    return to_job(row)


def _pool_contracts(ctx: Context, consumer_id: str) -> dict[str, str]:
    """pool ID → the consumer's live contract on it."""
    rows = ctx.session.execute(
        select(ComputePoolRow.id, ContractRow.id)
        .join(ProductRow, ProductRow.id == ComputePoolRow.product_id)
        .join(ContractRow, ContractRow.product_id == ProductRow.id)
        .where(
            ContractRow.consumer_id == consumer_id,
            ContractRow.state == ContractState.FINALIZED.value,
            ContractRow.suspended.is_(False),
            ComputePoolRow.status == "active",
        )
        .order_by(ContractRow.id)
    ).all()
    return {pool: contract for pool, contract in rows}


def _slot0(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def _spec(row: ComputeJobRow, now: datetime, contracts: dict[str, str]) -> JobSpec:
    c = row.constraints
    allowed = c.get("allowed_provinces")
    interactive = row.latency_class == "interactive"
    deadline = max(1, int((row.deadline - _slot0(now)).total_seconds() // 3600))
    return JobSpec(
        id=row.id,
        cores=row.cores,
        duration=max(1, math.ceil(row.duration_s / 3600)),
        release=0,
        deadline=deadline,
        interactive=interactive,
        allowed_provinces=None if allowed is None else frozenset(allowed),
        data_province=c.get("data_province"),
        max_latency_ms=LATENCY_CLASSES[row.latency_class],
        residency_reason=c.get("rule", ""),
        allowed_pools=frozenset(contracts),
        memory_gb=float(row.memory_gb),
    )


def _booked(ctx: Context, now: datetime) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cores and memory already booked per pool and hour by placed or running jobs."""
    booked: dict[str, np.ndarray] = {}
    memory: dict[str, np.ndarray] = {}
    base = _slot0(now)
    for r in ctx.session.scalars(
        select(ComputeJobRow).where(ComputeJobRow.status.in_(("placed", "running")))
    ):
        if r.pool_id is None or r.start_at is None:
            continue
        s = max(0, int((r.start_at - base).total_seconds() // 3600))
        e = min(HORIZON_H, s + max(1, math.ceil(r.duration_s / 3600)))
        booked.setdefault(r.pool_id, np.zeros(HORIZON_H))[s:e] += r.cores
        memory.setdefault(r.pool_id, np.zeros(HORIZON_H))[s:e] += r.memory_gb
    return booked, memory


def _round(ctx: Context, rows: list[ComputeJobRow]) -> str:
    contracts = {r.consumer_id: _pool_contracts(ctx, r.consumer_id) for r in rows}
    contracted = {pool for c in contracts.values() for pool in c}
    # the round weighs listed pools and those the consumers hold contracts on, never anyone's drafts
    pools = [
        to_pool(p)
        for p in ctx.session.scalars(
            select(ComputePoolRow).where(ComputePoolRow.status == "active").order_by(ComputePoolRow.id)
        )
        if p.id in contracted or _listed(ctx, p)
    ]
    specs = [_spec(r, ctx.now, contracts[r.consumer_id]) for r in rows]
    start_hour = (ctx.now + LOCAL_OFFSET).hour
    cores, memory = _booked(ctx, ctx.now)
    result = schedule_round(
        specs,
        [p.spec() for p in pools],
        horizon=HORIZON_H,
        start_hour=start_hour,
        carbon_weight=CARBON_WEIGHT,
        booked=cores,
        booked_memory=memory,
    )
    placed = result.by_job()
    for r in rows:
        p = placed[r.id]
        r.placement = p.to_json() | {
            "method": result.method,
            "solver_status": result.status,
            "carbon_weight_fen_per_kg": CARBON_WEIGHT,
            "topology": topology.VERSION,
            "decided_at": ctx.now.isoformat(),
        }
        r.updated_at = ctx.now
        if p.pool_id is None or p.start is None:
            r.status = "unplaced"
        else:
            r.status = "placed"
            r.pool_id = p.pool_id
            r.pool_contract_id = contracts[r.consumer_id][p.pool_id]
            r.start_at = ctx.now if p.start == 0 else _slot0(ctx.now) + timedelta(hours=p.start)
        ctx.emit(
            "compute.job_placed",
            [r.id, *([r.pool_id] if r.pool_id else [])],
            {
                "id": r.id,
                "status": r.status,
                "pool": r.pool_id,
                "start": None if r.start_at is None else r.start_at.isoformat(),
                "estimated_cost_fen": p.cost_fen,
                "estimated_kg_co2": p.kg_co2,
                "method": result.method,
                "explanation": digest(r.placement),
            },
        )
    return result.method


def _listed(ctx: Context, pool: ComputePoolRow) -> bool:
    product = ctx.session.get(ProductRow, pool.product_id) if pool.product_id else None
    return product is not None and product.status == "listed"


def schedule_jobs(ctx: Context) -> dict[str, Any]:
    """The operator's placement round over every submitted or unplaced job."""
    ctx.require(Role.OPERATOR, action="running a placement round")
    rows = list(
        ctx.session.scalars(
            select(ComputeJobRow)
            .where(ComputeJobRow.status.in_(("submitted", "unplaced")))
            .order_by(ComputeJobRow.id)
        )
    )
    if not rows:
        return {"jobs": 0, "method": None}
    method = _round(ctx, rows)
    return {"jobs": len(rows), "method": method, "placed": sum(r.status == "placed" for r in rows)}


def _get(ctx: Context, job_id: str, *, lock: bool = False) -> ComputeJobRow:
    stmt = select(ComputeJobRow).where(ComputeJobRow.id == job_id)
    if lock:
        stmt = stmt.with_for_update()
    row = ctx.session.scalars(stmt).first()
    me = ctx.principal.participant_id
    if row is None:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    pool = ctx.session.get(ComputePoolRow, row.pool_id) if row.pool_id else None
    if not (
        row.consumer_id == me or oversees(ctx) or ctx.principal.is_system or (pool and pool.provider_id == me)
    ):
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    return row


def get_job(ctx: Context, job_id: str) -> Job:
    return to_job(_get(ctx, job_id))


def list_jobs(
    ctx: Context, *, status: str | None = None, limit: int = 50, cursor: str | None = None
) -> Page[Job]:
    stmt = select(ComputeJobRow)
    if not oversees(ctx):
        stmt = stmt.where(ComputeJobRow.consumer_id == ctx.principal.participant_id)
    if status:
        stmt = stmt.where(ComputeJobRow.status == status)
    return paginate(ctx.session, stmt, ComputeJobRow.id, cursor, limit, to_job)


def explain_job(ctx: Context, job_id: str) -> dict[str, Any]:
    """Why the job runs where and when it does: constraints, the placement's reasons, the alternatives."""
    row = _get(ctx, job_id)
    return {
        "job_id": row.id,
        "status": row.status,
        "constraints": row.constraints,
        "placement": row.placement,
    }


def _require_runner(ctx: Context, row: ComputeJobRow) -> None:
    if row.consumer_id != ctx.principal.participant_id:
        raise Forbidden(f"only the consumer's node runs job {row.id}")
    ctx.require(Role.CONSUMER, action="running a compute job")


def check_runner(ctx: Context, job_id: str) -> None:
    """Read-only: may the caller run ``job_id``? Routes call it before they look at the request's input,
    so a caller who may not run the job learns nothing from input validation (403/404, never 422)."""
    _require_runner(ctx, _get(ctx, job_id))


def start_job(ctx: Context, job_id: str) -> Job:
    """The consumer's node takes a placed job whose start time has come (placed → running).

    A job left ``running`` by a node that died mid-run may be started again: the private-SQL use and the
    compute use are both recorded under node keys, so a re-run never charges twice.
    """
    row = _get(ctx, job_id, lock=True)
    _require_runner(ctx, row)
    if row.status not in ("placed", "running") or row.start_at is None:
        raise Conflict(f"job {job_id} is {row.status}; only placed jobs start")
    if row.start_at > ctx.now:
        raise Conflict(f"job {job_id} is placed to start at {row.start_at.isoformat()} (carbon-aware shift)")
    restart = row.status == "running"
    row.status = "running"
    row.updated_at = ctx.now
    ctx.emit(
        "compute.job_restarted" if restart else "compute.job_started",
        [row.id, row.pool_id or ""],
        {"id": row.id, "pool": row.pool_id},
    )
    return to_job(row)


def finish_job(
    ctx: Context,
    job_id: str,
    *,
    core_seconds: int,
    result_digest: str | None = None,
    error: str | None = None,
) -> Job:
    """Meter a finished (or failed) job: the use on the pool contract, energy and emissions; idempotent."""
    from datavalley.market.contracts import record_use

    row = _get(ctx, job_id, lock=True)
    if row.consumer_id != ctx.principal.participant_id:
        raise Forbidden(f"only the consumer's node reports job {job_id}")
    ctx.require(Role.CONSUMER, action="reporting a compute job")
    if row.status in ("done", "failed"):
        return to_job(row)
    if row.status != "running" or row.pool_id is None or row.pool_contract_id is None:
        raise Conflict(f"job {job_id} is {row.status}; only running jobs finish")
    if isinstance(core_seconds, bool) or not isinstance(core_seconds, int) or not 0 <= core_seconds <= 10**9:
        raise InvalidInput("core_seconds must be an integer between 0 and 10^9", field="core_seconds")
    if core_seconds == 0:  # nothing ran on the pool (answered from the node's cache, or refused first)
        row.status = "failed" if error else "done"
        row.result_digest, row.error, row.updated_at = result_digest, error, ctx.now
        ctx.emit("compute.job_finished", [row.id], {"id": row.id, "status": row.status, "core_seconds": 0})
        return to_job(row)
    pool = to_pool(ctx.session.get(ComputePoolRow, row.pool_id))  # type: ignore[arg-type]
    core_hours = core_seconds / 3600.0
    base = row.start_at or ctx.now
    hours = max(1, math.ceil(core_seconds / max(1, row.cores) / 3600))
    factors = [
        topology.hourly_factor(pool.province, (base + LOCAL_OFFSET + timedelta(hours=h)).hour)
        for h in range(hours)
    ]
    factor = sum(factors) / len(factors)
    energy = topology.energy_kwh(core_hours, pue=pool.pue, watts=pool.watts_per_core)
    kg = topology.kg_co2(
        core_hours, pue=pool.pue, factor=factor, green_share=pool.green_share, watts=pool.watts_per_core
    )
    request = digest({"job": row.id, "core_seconds": core_seconds, "result": result_digest, "error": error})
    use = record_use(
        ctx,
        row.pool_contract_id,
        operation="dv:compute",
        purpose="compute",
        quantity=core_seconds,
        request_digest=request,
        node_key=f"job:{row.id}",
    )
    row.core_seconds = core_seconds
    row.energy_kwh = energy
    row.kg_co2 = kg
    row.amount = use.amount
    row.use_id = use.id
    row.result_digest = result_digest
    row.error = error
    row.status = "failed" if error else "done"
    row.updated_at = ctx.now
    ctx.emit(
        "compute.job_metered",
        [row.id, row.pool_id, row.pool_contract_id, use.id],
        {
            "id": row.id,
            "status": row.status,
            "pool": row.pool_id,
            "core_seconds": core_seconds,
            "energy_kwh": round(energy, 9),
            "kg_co2": round(kg, 9),
            "grid_factor": round(factor, 6),
            "pue": pool.pue,
            "green_share": pool.green_share,
            "amount": use.amount,
            "use": use.id,
            "result": result_digest,
        },
    )
    return to_job(row)


def compute_lines(
    ctx: Context, participant_id: str, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """A participant's finished jobs (in ``[start, end)`` by finishing time): core-hours, energy,
    emissions and the amount charged, with totals. The market's statement embeds this."""
    stmt = select(ComputeJobRow).where(
        ComputeJobRow.consumer_id == participant_id, ComputeJobRow.status.in_(("done", "failed"))
    )
    if start is not None:
        stmt = stmt.where(ComputeJobRow.updated_at >= start)
    if end is not None:
        stmt = stmt.where(ComputeJobRow.updated_at < end)
    lines: list[dict[str, Any]] = []
    for r in ctx.session.scalars(stmt.order_by(ComputeJobRow.id)):
        lines.append(
            {
                "job_id": r.id,
                "pool_id": r.pool_id,
                "contract_id": r.pool_contract_id,
                "use_id": r.use_id,
                "core_hours": round(r.core_seconds / 3600.0, 6),
                "energy_kwh": round(r.energy_kwh, 9),
                "kg_co2": round(r.kg_co2, 9),
                "amount": r.amount,
            }
        )
    return {
        "lines": lines,
        "totals": {
            "core_hours": round(sum(x["core_hours"] for x in lines), 6),
            "energy_kwh": round(sum(x["energy_kwh"] for x in lines), 9),
            "kg_co2": round(sum(x["kg_co2"] for x in lines), 9),
            "amount": sum(x["amount"] for x in lines),
        },
    }


def compute_statement(ctx: Context, participant_id: str | None = None) -> dict[str, Any]:
    """A participant's compute lines: per job core-hours, energy, emissions and the amount charged."""
    who = participant_id or ctx.principal.participant_id
    if who is None or (who != ctx.principal.participant_id and not oversees(ctx)):
        raise Forbidden("only the participant itself or an overseer reads its compute statement")
    return {"participant_id": who, **compute_lines(ctx, who)}
