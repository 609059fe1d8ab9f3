"""The placement scheduler: one round of jobs onto pools and start hours.

Model (docs/COMPUTE.md, "Scheduler"). Time is split into hourly slots; slot 0 is the round's first hour.
Each job ``j`` needs ``cores_j`` for ``dur_j`` slots, may start from ``release_j`` and must finish by
``deadline_j``; it may run only on pools its data constraints allow (residency) and, when interactive, only
within its latency bound and at its release slot. Each pool ``p`` has ``cap_p`` cores per slot (less what
earlier rounds already booked) and availability windows.

    minimise   Σ x[j,p,s] · (price_p · cores_j · dur_j + λ · kgCO2(j,p,s)) + M · Σ u_j
    subject to Σ_{p,s} x[j,p,s] + u_j = 1                          (each job placed or left over)
               Σ_{j,s : s ≤ t < s+dur_j} cores_j · x[j,p,s] ≤ cap_p(t)   (capacity, every pool and slot)
               x binary, u ≥ 0; residency, latency and deadlines by construction of the candidates.

kgCO2(j,p,s) = cores_j × Σ_{t=s}^{s+dur_j−1} W/1000 × PUE_p × factor_p(t) × (1 − green_p): the hourly
factor makes start time matter (time shifting) and the provincial factor makes the pool matter (spatial
shifting). To keep rounds within the time limit each job keeps its ``keep`` cheapest candidates plus the
earliest start of every allowed pool. The MILP is solved by HiGHS with a time limit; if HiGHS is missing,
finds no incumbent in time, or fails, the documented greedy fallback runs: jobs by (deadline, size),
each to its cheapest candidate with room.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datavalley.compute import topology

UNPLACED_PENALTY = 1e7  # per job: any placement is cheaper than leaving a job over


@dataclass(frozen=True)
class PoolSpec:
    id: str
    cluster: str
    province: str
    cores: int
    price: int  # fen per core-hour
    pue: float
    green_share: float
    watts_per_core: float = topology.WATTS_PER_CORE
    windows: tuple[tuple[int, int], ...] = ()  # available [start, end) hours of day; empty = always


@dataclass(frozen=True)
class JobSpec:
    id: str
    cores: int
    duration: int  # slots (hours), ≥ 1
    release: int  # first slot it may start
    deadline: int  # slot by which it must have finished (exclusive end)
    interactive: bool = False
    allowed_provinces: frozenset[str] | None = None  # None: anywhere in the country
    data_province: str | None = None
    max_latency_ms: float | None = None
    residency_reason: str = "no residency constraint"
    allowed_pools: frozenset[str] | None = None  # None: every pool (e.g. pools the consumer contracted)


@dataclass(frozen=True)
class Option:
    pool: str
    start: int
    cost_fen: float
    kg_co2: float
    objective: float


@dataclass(frozen=True)
class Placement:
    job_id: str
    pool_id: str | None
    start: int | None
    cost_fen: float
    kg_co2: float
    reasons: tuple[str, ...]
    alternatives: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "pool_id": self.pool_id,
            "start": self.start,
            "cost_fen": round(self.cost_fen, 4),
            "kg_co2": round(self.kg_co2, 6),
            "reasons": list(self.reasons),
            "alternatives": list(self.alternatives),
        }


@dataclass(frozen=True)
class RoundResult:
    placements: tuple[Placement, ...]
    method: str  # milp | milp-time-limit | greedy
    objective: float
    elapsed_s: float
    status: str
    candidates: int
    notes: tuple[str, ...] = field(default=())

    def by_job(self) -> dict[str, Placement]:
        return {p.job_id: p for p in self.placements}


def intensity(pool: PoolSpec, horizon: int, start_hour: int) -> np.ndarray:
    """kgCO2 per core-hour of ``pool`` for each slot of the horizon."""
    hours = [(start_hour + t) % 24 for t in range(horizon)]
    f = np.array([topology.hourly_factor(pool.province, h) for h in hours])
    return f * pool.watts_per_core / 1000.0 * pool.pue * (1.0 - pool.green_share)


def _available(pool: PoolSpec, horizon: int, start_hour: int) -> np.ndarray:
    ok = np.ones(horizon, dtype=bool)
    if pool.windows:
        for t in range(horizon):
            h = (start_hour + t) % 24
            ok[t] = any(a <= h < b if a < b else (h >= a or h < b) for a, b in pool.windows)
    return ok


@dataclass
class _Setup:
    pools: list[PoolSpec]
    kgph: np.ndarray  # pool × slot
    cum: np.ndarray  # pool × (slot+1): prefix sums of kgph
    avail_cum: np.ndarray  # pool × (slot+1): prefix sums of unavailable slots
    cap: np.ndarray  # pool × slot, free cores


def _setup(
    pools: Sequence[PoolSpec], horizon: int, start_hour: int, booked: Mapping[str, np.ndarray] | None
) -> _Setup:
    kg = np.stack([intensity(p, horizon, start_hour) for p in pools])
    cum = np.concatenate([np.zeros((len(pools), 1)), np.cumsum(kg, axis=1)], axis=1)
    unavail = np.stack([~_available(p, horizon, start_hour) for p in pools]).astype(np.int64)
    ucum = np.concatenate([np.zeros((len(pools), 1), dtype=np.int64), np.cumsum(unavail, axis=1)], axis=1)
    cap = np.array([[p.cores] * horizon for p in pools], dtype=np.float64)
    if booked:
        for i, p in enumerate(pools):
            if p.id in booked:
                cap[i] -= booked[p.id][:horizon]
    return _Setup(list(pools), kg, cum, ucum, np.maximum(cap, 0.0))


def _excluded(job: JobSpec, pool: PoolSpec) -> str | None:
    if job.allowed_pools is not None and pool.id not in job.allowed_pools:
        return "contract: the consumer has no live contract on this pool"
    if job.allowed_provinces is not None and pool.province not in job.allowed_provinces:
        return f"residency: {job.residency_reason}"
    if job.interactive and job.max_latency_ms is not None and job.data_province is not None:
        lat = topology.latency_ms(job.data_province, pool.cluster)
        if lat > job.max_latency_ms:
            return f"latency: {lat:.1f} ms from {job.data_province} > {job.max_latency_ms:g} ms"
    if job.cores > pool.cores:
        return f"size: needs {job.cores} cores, pool has {pool.cores}"
    return None


@dataclass
class _Cands:
    """All feasible (pool, start) options of one job as arrays, and why the other pools are out."""

    pool: np.ndarray
    start: np.ndarray
    cost: np.ndarray
    kg: np.ndarray
    obj: np.ndarray
    why: dict[str, str]

    def option(self, s: _Setup, i: int) -> Option:
        return Option(
            s.pools[int(self.pool[i])].id,
            int(self.start[i]),
            float(self.cost[i]),
            float(self.kg[i]),
            float(self.obj[i]),
        )


def candidates(job: JobSpec, s: _Setup, carbon_weight: float) -> _Cands:
    horizon = s.kgph.shape[1]
    why: dict[str, str] = {}
    last = min(job.deadline, horizon) - job.duration
    starts = np.arange(job.release, (job.release if job.interactive else last) + 1)
    starts = starts[(starts >= 0) & (starts <= last)]
    parts: list[tuple[int, np.ndarray, float, np.ndarray]] = []
    for i, pool in enumerate(s.pools):
        reason = _excluded(job, pool)
        if reason is None and starts.size == 0:
            reason = "deadline: cannot finish in time from its release"
        if reason is not None:
            why[pool.id] = reason
            continue
        ok = (s.avail_cum[i, starts + job.duration] - s.avail_cum[i, starts]) == 0
        st = starts[ok]
        if st.size == 0:
            why[pool.id] = "availability: the pool is closed in every feasible window"
            continue
        kg = (s.cum[i, st + job.duration] - s.cum[i, st]) * job.cores
        parts.append((i, st, float(pool.price * job.cores * job.duration), kg))
    if not parts:
        e = np.empty(0)
        return _Cands(e.astype(np.int64), e.astype(np.int64), e, e, e, why)
    pool_a = np.concatenate([np.full(len(st), i) for i, st, _, _ in parts])
    start_a = np.concatenate([st for _, st, _, _ in parts])
    cost_a = np.concatenate([np.full(len(st), c) for _, st, c, _ in parts])
    kg_a = np.concatenate([kg for _, _, _, kg in parts])
    return _Cands(pool_a, start_a, cost_a, kg_a, cost_a + carbon_weight * kg_a, why)


def _prune(c: _Cands, keep: int) -> np.ndarray:
    """Indices kept for the solver: the ``keep`` best plus the earliest start on every pool."""
    n = len(c.obj)
    if n <= keep:
        return np.arange(n)
    order = np.lexsort((c.start, c.obj))[:keep]
    first = np.lexsort((c.start, c.pool))
    _, idx = np.unique(c.pool[first], return_index=True)
    return np.unique(np.concatenate([order, first[idx]]))


_BANNER = threading.Lock()
_quiet = False


def _highs() -> Any:
    """A HiGHS instance; its one-off copyright banner (C-level stdout) is kept out of our output."""
    global _quiet
    import highspy

    with _BANNER:
        if _quiet:
            return highspy.Highs()
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _quiet = True
        return h


def _milp(
    jobs: Sequence[JobSpec],
    cands: list[list[Option]],
    s: _Setup,
    time_limit: float,
    start: list[int | None],
) -> tuple[list[int | None], str, float] | None:
    """Solve with HiGHS; the chosen option index per job (None: left over), status, objective."""
    try:
        import highspy
    except ImportError:
        return None
    pidx = {p.id: i for i, p in enumerate(s.pools)}
    horizon = s.kgph.shape[1]
    n_x = sum(len(c) for c in cands)
    n = n_x + len(jobs)
    cost = np.empty(n)
    cols_rows: list[np.ndarray] = []
    cols_vals: list[np.ndarray] = []
    owner = np.empty(n_x, dtype=np.int64)
    k = 0
    for j, (job, opts) in enumerate(zip(jobs, cands, strict=True)):
        for o in opts:
            cost[k] = o.objective
            owner[k] = j
            p = pidx[o.pool]
            cap_rows = len(jobs) + p * horizon + np.arange(o.start, o.start + job.duration)
            cols_rows.append(np.concatenate([[j], cap_rows]))
            cols_vals.append(np.concatenate([[1.0], np.full(job.duration, float(job.cores))]))
            k += 1
    for j in range(len(jobs)):
        cost[n_x + j] = UNPLACED_PENALTY
        cols_rows.append(np.array([j]))
        cols_vals.append(np.array([1.0]))
    colstart = np.zeros(n + 1, dtype=np.int32)
    colstart[1:] = np.cumsum([len(r) for r in cols_rows])
    index = np.concatenate(cols_rows).astype(np.int32)
    value = np.concatenate(cols_vals)
    n_rows = len(jobs) + len(s.pools) * horizon
    row_lo = np.concatenate([np.ones(len(jobs)), np.full(len(s.pools) * horizon, -highspy.kHighsInf)])
    row_hi = np.concatenate([np.ones(len(jobs)), s.cap.reshape(-1)])
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = n_rows
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.row_lower_ = row_lo
    lp.row_upper_ = row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = colstart
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n_x + [highspy.HighsVarType.kContinuous] * len(jobs)
    h = _highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 1e-4)
    h.setOptionValue("threads", 1)
    h.passModel(lp)
    # the greedy solution is a feasible start: HiGHS only ever improves on it
    x0 = np.zeros(n)
    base = 0
    for j, opts in enumerate(cands):
        m0 = start[j]
        if m0 is None:
            x0[n_x + j] = 1.0
        else:
            x0[base + m0] = 1.0
        base += len(opts)
    sol = highspy.HighsSolution()
    sol.col_value = x0
    sol.value_valid = True
    h.setSolution(sol)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    info = h.getInfo()
    if info.primal_solution_status != 2:  # no feasible incumbent
        return None
    x = np.asarray(h.getSolution().col_value)
    chosen: list[int | None] = [None] * len(jobs)
    base = 0
    for j, opts in enumerate(cands):
        if opts:
            seg = x[base : base + len(opts)]
            m = int(np.argmax(seg))
            if seg[m] > 0.5:
                chosen[j] = m
        base += len(opts)
    return chosen, status, float(info.objective_function_value)


def _fits(cap: np.ndarray, p: int, start: int, job: JobSpec) -> bool:
    return bool(np.all(cap[p, start : start + job.duration] >= job.cores - 1e-9))


def _greedy(jobs: Sequence[JobSpec], cands: list[list[Option]], s: _Setup) -> list[int | None]:
    """Fallback: earliest deadline first (bigger first on ties), each to its cheapest option with room."""
    pidx = {p.id: i for i, p in enumerate(s.pools)}
    cap = s.cap.copy()
    chosen: list[int | None] = [None] * len(jobs)
    order = sorted(range(len(jobs)), key=lambda j: (jobs[j].deadline, -jobs[j].cores * jobs[j].duration))
    for j in order:
        job = jobs[j]
        for m in sorted(range(len(cands[j])), key=lambda m: (cands[j][m].objective, cands[j][m].start)):
            o = cands[j][m]
            p = pidx[o.pool]
            if _fits(cap, p, o.start, job):
                cap[p, o.start : o.start + job.duration] -= job.cores
                chosen[j] = m
                break
    return chosen


def _explain(job: JobSpec, full: _Cands, pick: Option | None, s: _Setup) -> Placement:
    why = full.why
    reasons: list[str] = []
    alts: list[dict[str, Any]] = []
    best_of: dict[int, int] = {}
    if len(full.obj):
        order = np.lexsort((full.start, full.obj))
        pools_sorted = full.pool[order]
        _, first = np.unique(pools_sorted, return_index=True)
        best_of = {int(pools_sorted[f]): int(order[f]) for f in first}
    for i, pool in enumerate(s.pools):
        if pool.id in why:
            alts.append({"pool": pool.id, "excluded": why[pool.id]})
        elif i in best_of:
            o = full.option(s, best_of[i])
            alts.append(
                {
                    "pool": pool.id,
                    "best_start": o.start,
                    "cost_fen": round(o.cost_fen, 4),
                    "kg_co2": round(o.kg_co2, 6),
                    "chosen": pick is not None and o.pool == pick.pool,
                }
            )
    reasons.extend(sorted({w for w in why.values() if w.startswith("residency")}))
    reasons.extend(sorted({w for w in why.values() if w.startswith("latency")}))
    if pick is None:
        reasons.append(
            "unplaced: no candidate fits the remaining capacity before the deadline"
            if len(full.obj)
            else "unplaced: no pool satisfies its constraints"
        )
        return Placement(job.id, None, None, 0.0, 0.0, tuple(reasons), tuple(alts))
    best = full.option(s, int(np.lexsort((full.start, full.obj))[0]))
    if pick.objective > best.objective + 1e-9:
        reasons.append(
            f"capacity: its cheapest option ({best.pool} at +{best.start} h) was taken by other jobs; "
            "next best chosen"
        )
    else:
        reasons.append("cheapest objective (price + carbon weight × kgCO2) among feasible options")
    pi = next(i for i, p in enumerate(s.pools) if p.id == pick.pool)
    asap = np.nonzero((full.pool == pi) & (full.start == job.release))[0]
    if pick.start > job.release and asap.size and pick.kg_co2 < float(full.kg[asap[0]]):
        saved = float(full.kg[asap[0]]) - pick.kg_co2
        reasons.append(
            f"time-shifted by {pick.start - job.release} h within its deadline: {saved:.4g} kg less"
        )
    cluster = topology.CLUSTERS[s.pools[pi].cluster]
    if job.data_province is not None and topology.PROVINCES[job.data_province].east and cluster.west:
        reasons.append(f"spatially shifted east→west: data in {job.data_province}, run in {cluster.id}")
    return Placement(job.id, pick.pool, pick.start, pick.cost_fen, pick.kg_co2, tuple(reasons), tuple(alts))


def schedule_round(
    jobs: Sequence[JobSpec],
    pools: Sequence[PoolSpec],
    *,
    horizon: int = 48,
    start_hour: int = 0,
    carbon_weight: float = 100.0,
    time_limit: float = 1.5,
    booked: Mapping[str, np.ndarray] | None = None,
    keep: int = 6,
    method: str = "milp",
) -> RoundResult:
    """Place one round. ``carbon_weight`` is λ in fen per kgCO2; ``method`` "milp" or "greedy"."""
    t0 = time.perf_counter()
    if method not in ("milp", "greedy"):
        raise ValueError("method must be milp or greedy")
    if not pools or not jobs:
        return RoundResult(
            tuple(Placement(j.id, None, None, 0.0, 0.0, ("unplaced: no pools",), ()) for j in jobs),
            method,
            0.0,
            time.perf_counter() - t0,
            "empty",
            0,
        )
    s = _setup(pools, horizon, start_hour, booked)
    fulls = [candidates(job, s, carbon_weight) for job in jobs]
    cands = [[c.option(s, int(i)) for i in _prune(c, keep)] for c in fulls]
    notes: list[str] = []
    greedy = _greedy(jobs, cands, s)
    result = None
    if method == "milp":
        budget = max(0.05, time_limit - (time.perf_counter() - t0))
        result = _milp(jobs, cands, s, budget, greedy)
        if result is None:
            notes.append(
                "HiGHS returned no incumbent in the time limit (or is not installed): greedy fallback"
            )
    if result is not None:
        chosen, status, _ = result
        used = "milp" if status == "Optimal" else "milp-time-limit"
    else:
        chosen, status, used = greedy, "heuristic", "greedy"
    placements = []
    objective = 0.0
    for j, job in enumerate(jobs):
        m = chosen[j]
        pick = cands[j][m] if m is not None else None
        objective += pick.objective if pick else UNPLACED_PENALTY
        placements.append(_explain(job, fulls[j], pick, s))
    return RoundResult(
        tuple(placements),
        used,
        objective,
        time.perf_counter() - t0,
        status,
        sum(len(c) for c in cands),
        tuple(notes),
    )


def book(booked: dict[str, np.ndarray], placement: Placement, job: JobSpec, horizon: int) -> None:
    """Add a placement's cores to the booking table (for the next round)."""
    if placement.pool_id is None or placement.start is None:
        return
    arr = booked.setdefault(placement.pool_id, np.zeros(horizon))
    end = min(horizon, placement.start + job.duration)
    arr[placement.start : end] += job.cores


def slots(duration_s: float) -> int:
    return max(1, math.ceil(duration_s / 3600.0))
