"""The placement scheduler: one round of jobs onto pools and start hours.

Model (docs/COMPUTE.md, "Scheduler"). Time is split into hourly slots; slot 0 is the round's first hour.
Each job ``j`` needs ``cores_j`` for ``dur_j`` slots, may start from ``release_j`` and must finish by
``deadline_j``; it may run only on pools its data constraints allow (residency) and, when interactive, only
within its latency bound and at its release slot. Each pool ``p`` has ``cap_p`` cores per slot (less what
earlier rounds already booked) and availability windows.

    minimise   Σ x[j,p,s] · (price_p · cores_j · dur_j + λ · kgCO2(j,p,s)) + M · Σ u_j
    subject to Σ_{p,s} x[j,p,s] + u_j = 1                          (each job placed or left over)
               Σ_{j,s : s ≤ t < s+dur_j} cores_j · x[j,p,s] ≤ cap_p(t)   (capacity, every pool and slot)
               Σ_{j,s : s ≤ t < s+dur_j} mem_j · x[j,p,s] ≤ mem_p(t)     (memory, when pools state it)
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
from collections.abc import Callable, Mapping, Sequence
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
    memory_gb: float = math.inf


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
    memory_gb: float = 0.0


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
    mem: np.ndarray  # pool × slot, free memory (GB; inf when a pool states none)
    ids: np.ndarray  # pool IDs
    province: np.ndarray
    cores: np.ndarray
    price: np.ndarray
    latency: dict[str, np.ndarray] = field(default_factory=dict)  # data province → ms per pool

    def latency_from(self, province: str) -> np.ndarray:
        if province not in self.latency:
            self.latency[province] = np.array([topology.latency_ms(province, p.cluster) for p in self.pools])
        return self.latency[province]


def _setup(
    pools: Sequence[PoolSpec],
    horizon: int,
    start_hour: int,
    booked: Mapping[str, np.ndarray] | None,
    booked_memory: Mapping[str, np.ndarray] | None = None,
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
    mem = np.array([[p.memory_gb] * horizon for p in pools], dtype=np.float64)
    if booked_memory:
        for i, p in enumerate(pools):
            if p.id in booked_memory:
                mem[i] -= booked_memory[p.id][:horizon]
    return _Setup(
        list(pools),
        kg,
        cum,
        ucum,
        np.maximum(cap, 0.0),
        np.maximum(mem, 0.0),
        np.array([p.id for p in pools], dtype=object),
        np.array([p.province for p in pools], dtype=object),
        np.array([p.cores for p in pools]),
        np.array([float(p.price) for p in pools]),
    )


@dataclass
class _Cands:
    """The feasible (pool, start) options of one job as arrays, and why the other pools are out."""

    pool: np.ndarray  # pool index per option
    start: np.ndarray
    cost: np.ndarray
    kg: np.ndarray
    obj: np.ndarray
    why: dict[str, str]
    best: dict[int, int]  # pool index → option index of its best start
    asap_kg: dict[int, float]  # pool index → kg when started at the release slot

    def option(self, s: _Setup, i: int) -> Option:
        return Option(
            s.pools[int(self.pool[i])].id,
            int(self.start[i]),
            float(self.cost[i]),
            float(self.kg[i]),
            float(self.obj[i]),
        )


_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0)


def candidates(job: JobSpec, s: _Setup, carbon_weight: float) -> _Cands:
    """Every feasible (pool, start) of ``job`` with its cost, and why the other pools are out."""
    horizon = s.kgph.shape[1]
    why: dict[str, str] = {}
    n = len(s.pools)
    out = np.zeros(n, dtype=bool)

    def exclude(mask: np.ndarray, reason: Callable[[int], str]) -> None:
        for i in np.nonzero(mask & ~out)[0].tolist():
            why[s.pools[i].id] = reason(i)
        out[:] |= mask

    if job.allowed_pools is not None:
        exclude(
            np.array([p.id not in job.allowed_pools for p in s.pools]),
            lambda i: "contract: the consumer has no live contract on this pool",
        )
    if job.allowed_provinces is not None:
        allowed = job.allowed_provinces
        exclude(
            np.array([pr not in allowed for pr in s.province]), lambda i: f"residency: {job.residency_reason}"
        )
    if job.interactive and job.max_latency_ms is not None and job.data_province is not None:
        lat = s.latency_from(job.data_province)
        bound = job.max_latency_ms
        exclude(
            lat > bound,
            lambda i: f"latency: {lat[i]:.1f} ms from {job.data_province} > {bound:g} ms",
        )
    exclude(s.cores < job.cores, lambda i: f"size: needs {job.cores} cores, pool has {s.pools[i].cores}")
    exclude(
        np.array([p.memory_gb < job.memory_gb for p in s.pools]),
        lambda i: f"size: needs {job.memory_gb:g} GB, pool has {s.pools[i].memory_gb:g} GB",
    )
    last = min(job.deadline, horizon) - job.duration
    starts = np.arange(job.release, (job.release if job.interactive else last) + 1)
    starts = starts[(starts >= 0) & (starts <= last)]
    if starts.size == 0:
        exclude(~out, lambda i: "deadline: cannot finish in time from its release")
    a = np.nonzero(~out)[0]
    if a.size == 0:
        return _Cands(_EMPTY_I, _EMPTY_I, _EMPTY_F, _EMPTY_F, _EMPTY_F, why, {}, {})
    ok = (s.avail_cum[a][:, starts + job.duration] - s.avail_cum[a][:, starts]) == 0
    closed = ~ok.any(axis=1)
    for i in a[closed].tolist():
        why[s.pools[i].id] = "availability: the pool is closed in every feasible window"
    kg = (s.cum[a][:, starts + job.duration] - s.cum[a][:, starts]) * job.cores
    cost = s.price[a] * (job.cores * job.duration)
    obj = cost[:, None] + carbon_weight * kg
    rows, cols = np.nonzero(ok)
    c = _Cands(
        a[rows],
        starts[cols],
        cost[rows],
        kg[rows, cols],
        obj[rows, cols],
        why,
        {},
        {},
    )
    masked = np.where(ok, obj, np.inf)
    arg = masked.argmin(axis=1)
    flat = np.cumsum(ok.sum(axis=1)) - ok.sum(axis=1)  # index of each row's first option
    for r, i in enumerate(a.tolist()):
        if not closed[r]:
            c.best[i] = int(flat[r] + ok[r, : arg[r]].sum())
            if starts[0] == job.release and ok[r, 0]:
                c.asap_kg[i] = float(kg[r, 0])
    return c


def _prune(c: _Cands, keep: int) -> np.ndarray:
    """Indices kept for the solver: the ``keep`` best plus the earliest start on every pool."""
    n = len(c.obj)
    if n <= keep:
        return np.arange(n)
    order = np.argpartition(c.obj, keep)[:keep]
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
            return highspy.Highs()  # type: ignore[no-untyped-call]
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()  # type: ignore[no-untyped-call]
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _quiet = True
        return h


def _milp(
    jobs: Sequence[JobSpec],
    fulls: list[_Cands],
    kept: list[np.ndarray],
    s: _Setup,
    time_limit: float,
    start: list[int | None],
) -> tuple[list[int | None], str] | None:
    """Solve with HiGHS; the chosen full-option index per job (None: left over) and the status."""
    try:
        import highspy
    except ImportError:
        return None
    horizon = s.kgph.shape[1]
    n_j = len(jobs)
    sizes = np.array([len(k) for k in kept])
    n_x = int(sizes.sum())
    n = n_x + n_j
    owner = np.repeat(np.arange(n_j), sizes)
    pool = np.concatenate([fulls[j].pool[k] for j, k in enumerate(kept)]) if n_x else _EMPTY_I
    st = np.concatenate([fulls[j].start[k] for j, k in enumerate(kept)]) if n_x else _EMPTY_I
    obj = np.concatenate([fulls[j].obj[k] for j, k in enumerate(kept)]) if n_x else _EMPTY_F
    dur = np.array([j.duration for j in jobs])[owner]
    cores = np.array([float(j.cores) for j in jobs])[owner]
    memory = np.array([float(j.memory_gb) for j in jobs])[owner]
    # memory rows only when some pool states its memory and some job needs it
    with_mem = bool(np.isfinite(s.mem).any() and memory.any())
    k_rows = 2 if with_mem else 1
    n_pr = len(s.pools) * horizon
    # column k: the assignment row of its job, then one core row (and one memory row) per slot it occupies
    nnz_col = 1 + k_rows * dur
    colstart = np.zeros(n + 1, dtype=np.int64)
    colstart[1 : n_x + 1] = np.cumsum(nnz_col)
    colstart[n_x + 1 :] = colstart[n_x] + np.arange(1, n_j + 1)
    index = np.empty(int(colstart[-1]), dtype=np.int32)
    value = np.empty(int(colstart[-1]))
    first = colstart[:n_x]
    index[first] = owner
    value[first] = 1.0
    offs = np.arange(int(nnz_col.sum())) - np.repeat(first, nnz_col)  # 0..k·dur within each column
    pos = np.repeat(first, nnz_col) + offs
    rdur, rpool, rst = np.repeat(dur, nnz_col), np.repeat(pool, nnz_col), np.repeat(st, nnz_col)
    cap_mask = (offs > 0) & (offs <= rdur)
    slot = rst[cap_mask] + offs[cap_mask] - 1
    index[pos[cap_mask]] = n_j + rpool[cap_mask] * horizon + slot
    value[pos[cap_mask]] = np.repeat(cores, nnz_col)[cap_mask]
    if with_mem:
        mem_mask = offs > rdur
        slot = rst[mem_mask] + offs[mem_mask] - rdur[mem_mask] - 1
        index[pos[mem_mask]] = n_j + n_pr + rpool[mem_mask] * horizon + slot
        value[pos[mem_mask]] = np.repeat(memory, nnz_col)[mem_mask]
    index[colstart[n_x:n]] = np.arange(n_j)
    value[colstart[n_x:n]] = 1.0
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = n_j + k_rows * n_pr
    lp.col_cost_ = np.concatenate([obj, np.full(n_j, UNPLACED_PENALTY)])
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.row_lower_ = np.concatenate([np.ones(n_j), np.full(k_rows * n_pr, -highspy.kHighsInf)])
    uppers = [np.ones(n_j), s.cap.reshape(-1)]
    if with_mem:
        uppers.append(np.where(np.isfinite(s.mem), s.mem, highspy.kHighsInf).reshape(-1))
    lp.row_upper_ = np.concatenate(uppers)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = colstart.astype(np.int32)
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n_x + [highspy.HighsVarType.kContinuous] * n_j
    h = _highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 1e-4)
    h.setOptionValue("threads", 1)
    h.passModel(lp)
    # the greedy solution is a feasible start: HiGHS only ever improves on it
    x0 = np.zeros(n)
    base = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if n_j else _EMPTY_I
    for j in range(n_j):
        m0 = start[j]
        if m0 is None:
            x0[n_x + j] = 1.0
        else:
            x0[base[j] + int(np.nonzero(kept[j] == m0)[0][0])] = 1.0
    sol = highspy.HighsSolution()
    sol.col_value = x0
    sol.value_valid = True
    h.setSolution(sol)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    if h.getInfo().primal_solution_status != 2:  # no feasible incumbent
        return None
    x = np.asarray(h.getSolution().col_value)[:n_x]
    chosen: list[int | None] = [None] * n_j
    for k in np.nonzero(x > 0.5)[0].tolist():
        j = int(owner[k])
        chosen[j] = int(kept[j][k - base[j]])
    return chosen, status


def _greedy(
    jobs: Sequence[JobSpec], fulls: list[_Cands], kept: list[np.ndarray], s: _Setup
) -> list[int | None]:
    """Fallback: earliest deadline first (bigger first on ties), each to its cheapest option with room."""
    cap = s.cap.copy()
    mem = s.mem.copy()
    chosen: list[int | None] = [None] * len(jobs)
    order = sorted(range(len(jobs)), key=lambda j: (jobs[j].deadline, -jobs[j].cores * jobs[j].duration))
    for j in order:
        job, c, k = jobs[j], fulls[j], kept[j]
        for m in k[np.lexsort((c.start[k], c.obj[k]))].tolist():
            p, st = int(c.pool[m]), int(c.start[m])
            window = cap[p, st : st + job.duration]
            room = mem[p, st : st + job.duration]
            if np.all(window >= job.cores - 1e-9) and np.all(room >= job.memory_gb - 1e-9):
                window -= job.cores
                room -= job.memory_gb
                chosen[j] = m
                break
    return chosen


def _explain(job: JobSpec, full: _Cands, pick: Option | None, s: _Setup) -> Placement:
    why = full.why
    reasons: list[str] = []
    alts: list[dict[str, Any]] = []
    for i, pool in enumerate(s.pools):
        if pool.id in why:
            alts.append({"pool": pool.id, "excluded": why[pool.id]})
        elif i in full.best:
            m = full.best[i]
            alts.append(
                {
                    "pool": pool.id,
                    "best_start": int(full.start[m]),
                    "cost_fen": round(float(full.cost[m]), 4),
                    "kg_co2": round(float(full.kg[m]), 6),
                    "chosen": pick is not None and pool.id == pick.pool,
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
    m = int(np.argmin(full.obj))
    if pick.objective > float(full.obj[m]) + 1e-9:
        reasons.append(
            f"capacity: its cheapest option ({s.pools[int(full.pool[m])].id} at +{int(full.start[m])} h) "
            "was taken by other jobs; next best chosen"
        )
    else:
        reasons.append("cheapest objective (price + carbon weight × kgCO2) among feasible options")
    pi = next(i for i, p in enumerate(s.pools) if p.id == pick.pool)
    if pick.start > job.release and pi in full.asap_kg and pick.kg_co2 < full.asap_kg[pi]:
        saved = full.asap_kg[pi] - pick.kg_co2
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
    booked_memory: Mapping[str, np.ndarray] | None = None,
    keep: int = 6,
    method: str = "milp",
    explain: bool = True,
) -> RoundResult:
    """Place one round. ``carbon_weight`` is λ in fen per kgCO2; ``method`` "milp" or "greedy";
    ``time_limit`` bounds the whole round (the solver gets what candidate generation leaves)."""
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
    s = _setup(pools, horizon, start_hour, booked, booked_memory)
    fulls = [candidates(job, s, carbon_weight) for job in jobs]
    kept = [_prune(c, keep) for c in fulls]
    notes: list[str] = []
    greedy = _greedy(jobs, fulls, kept, s)
    result = None
    if method == "milp":
        reserve = 0.15 * time_limit if explain else 0.05 * time_limit  # for explanations
        budget = max(0.05, time_limit - reserve - (time.perf_counter() - t0))
        result = _milp(jobs, fulls, kept, s, budget, greedy)
        if result is None:
            notes.append(
                "HiGHS returned no incumbent in the time limit (or is not installed): greedy fallback"
            )
    if result is not None:
        chosen, status = result
        used = "milp" if status == "Optimal" else "milp-time-limit"
    else:
        chosen, status, used = greedy, "heuristic", "greedy"
    placements = []
    objective = 0.0
    for j, job in enumerate(jobs):
        m = chosen[j]
        pick = fulls[j].option(s, m) if m is not None else None
        objective += pick.objective if pick else UNPLACED_PENALTY
        if explain:
            placements.append(_explain(job, fulls[j], pick, s))
        elif pick is None:
            placements.append(Placement(job.id, None, None, 0.0, 0.0, (), ()))
        else:
            placements.append(Placement(job.id, pick.pool, pick.start, pick.cost_fen, pick.kg_co2, (), ()))
    return RoundResult(
        tuple(placements),
        used,
        objective,
        time.perf_counter() - t0,
        status,
        sum(len(k) for k in kept),
        tuple(notes),
    )
