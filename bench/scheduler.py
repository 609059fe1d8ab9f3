"""Scheduler benchmark: our placement (HiGHS MILP per hourly round, greedy fallback) against the
nearest-pool, cheapest-pool and carbon-greedy baselines on one synthetic trace, plus the time of one
round of 1,000 jobs × 20 pools.

Usage::

    .venv/bin/python bench/scheduler.py            # 10,000 jobs over 7 days
    .venv/bin/python bench/scheduler.py --quick    # 2,000 jobs over 2 days (well under a minute)

The trace (seeded, documented in docs/COMPUTE.md):

- 20 pools, two per cluster of the topology; eastern pools 64 cores at 40–48 fen per core-hour, PUE 1.25,
  10 % green electricity; western pools 96 cores at 24–30 fen, PUE 1.15–1.2, 30–50 % green (modelled).
- arrivals: a diurnal profile (rate ∝ 1 + 0.6 · sin(π (h − 8) / 12), peak at 14:00 local time);
- durations: log-normal (median 1.5 h, σ = 0.8), whole hours 1–12; cores from {1, 2, 4, 8, 16};
- 30 % interactive (1 h, must start on arrival, ≤ 10 ms from the data), 70 % batch (deadline 4–24 h
  of slack after the duration);
- data spread over ten eastern provinces; 70 % general, 15 % with personal information, 12 % important
  (stays in its province), 3 % core (never leaves its node: no scheduler may place it).

Every scheduler sees the same jobs in hourly rounds, with capacity booked by earlier rounds. A job
not placed by its deadline is a deadline miss and runs late (re-submitted with 48 h more). The residency
check is independent of the schedulers: it re-derives, for each placement, whether the pool's province
is allowed. Emissions use the same model as the exchange (topology.hourly_factor × PUE × W × (1 − green)).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from datavalley.compute import topology
from datavalley.compute.scheduler import JobSpec, PoolSpec, schedule_round

EAST = [
    "beijing",
    "tianjin",
    "hebei",
    "shanghai",
    "jiangsu",
    "zhejiang",
    "anhui",
    "guangdong",
    "shandong",
    "fujian",
]
EAST_W = [0.16, 0.05, 0.06, 0.16, 0.14, 0.12, 0.05, 0.16, 0.06, 0.04]
HORIZON = 48
INTERACTIVE_MS = 10.0
CARBON_WEIGHT = 100.0  # the exchange's default λ: 100 fen per kg (1,000 CNY/t)
GREEN_WEIGHT = 10_000.0  # a carbon-first operator: 100 CNY per kg


@dataclass(frozen=True)
class TJob:
    spec: JobSpec  # release/deadline in absolute hours
    arrival: int
    grade: str


def make_pools() -> list[PoolSpec]:
    rng = random.Random(7)
    pools = []
    for c in topology.CLUSTERS.values():
        for k in range(2):
            if c.west:
                pools.append(
                    PoolSpec(
                        f"{c.id}-{k}",
                        c.id,
                        c.provinces[0],
                        96,
                        rng.randint(24, 30),
                        rng.choice([1.15, 1.2]),
                        rng.choice([0.3, 0.4, 0.5]),
                    )
                )
            else:
                prov = c.provinces[k % len(c.provinces)]
                pools.append(PoolSpec(f"{c.id}-{k}", c.id, prov, 64, rng.randint(40, 48), 1.25, 0.1))
    return pools


def make_trace(n: int, days: int, seed: int = 2026) -> list[TJob]:
    rng = random.Random(seed)
    hours = days * 24
    w = [1 + 0.6 * math.sin(math.pi * ((h % 24) - 8) / 12) for h in range(hours)]
    jobs = []
    for i in range(n):
        t = rng.choices(range(hours), weights=w)[0]
        prov = rng.choices(EAST, weights=EAST_W)[0]
        u = rng.random()
        grade = "general" if u < 0.70 else "pi" if u < 0.85 else "important" if u < 0.97 else "core"
        interactive = rng.random() < 0.30
        if interactive:
            dur, deadline = 1, t + 1
        else:
            dur = min(12, max(1, round(rng.lognormvariate(math.log(1.5), 0.8))))
            deadline = t + dur + rng.randint(4, 24)
        cores = rng.choices([1, 2, 4, 8, 16], weights=[0.3, 0.25, 0.2, 0.15, 0.1])[0]
        allowed: frozenset[str] | None
        if grade == "core":
            allowed, why = frozenset(), "core data never moves"
        elif grade == "important":
            allowed, why = frozenset({prov}), f"important data stays in {prov}"
        else:
            allowed, why = None, "domestic"
        spec = JobSpec(
            f"j{i}",
            cores,
            dur,
            t,
            deadline,
            interactive,
            allowed,
            prov,
            INTERACTIVE_MS if interactive else None,
            why,
        )
        jobs.append(TJob(spec, t, grade))
    jobs.sort(key=lambda j: (j.arrival, j.spec.id))
    return jobs


class Sim:
    def __init__(self, pools: list[PoolSpec], hours: int) -> None:
        self.pools = pools
        self.idx = {p.id: i for i, p in enumerate(pools)}
        self.total = hours + 24 * 8
        self.used = np.zeros((len(pools), self.total))
        self.kgph = np.stack(
            [
                np.array([topology.hourly_factor(p.province, h % 24) for h in range(self.total)])
                * p.watts_per_core
                / 1000
                * p.pue
                * (1 - p.green_share)
                for p in pools
            ]
        )
        self.cost = 0.0
        self.kg = 0.0
        self.placed: list[tuple[JobSpec, str, int]] = []

    def fits(self, p: int, start: int, job: JobSpec) -> bool:
        end = start + job.duration
        return end <= self.total and bool(np.all(self.used[p, start:end] + job.cores <= self.pools[p].cores))

    def place(self, job: JobSpec, pool_id: str, start: int) -> None:
        p = self.idx[pool_id]
        self.used[p, start : start + job.duration] += job.cores
        self.cost += self.pools[p].price * job.cores * job.duration
        self.kg += float(self.kgph[p, start : start + job.duration].sum()) * job.cores
        self.placed.append((job, pool_id, start))


def allowed(job: JobSpec, pool: PoolSpec) -> bool:
    if job.allowed_provinces is not None and pool.province not in job.allowed_provinces:
        return False
    if job.cores > pool.cores:
        return False
    if job.interactive and job.data_province and job.max_latency_ms is not None:
        return topology.latency_ms(job.data_province, pool.cluster) <= job.max_latency_ms
    return True


def baseline(
    order: Callable[[JobSpec, PoolSpec, int], float],
) -> Callable[[Sim, list[JobSpec], int], list[JobSpec]]:
    """ASAP on the first pool (by ``order``) with room before the deadline; None placed → carried over."""

    def run(sim: Sim, jobs: list[JobSpec], now: int) -> list[JobSpec]:
        left = []
        for job in jobs:
            pools = sorted((p for p in sim.pools if allowed(job, p)), key=lambda p: order(job, p, now))
            done = False
            for p in pools:
                last = now if job.interactive else job.deadline - job.duration
                for s in range(now, last + 1):
                    if sim.fits(sim.idx[p.id], s, job):
                        sim.place(job, p.id, s)
                        done = True
                        break
                if done:
                    break
            if not done:
                left.append(job)
        return left

    return run


def ours_with(weight: float) -> Callable[[Sim, list[JobSpec], int], list[JobSpec]]:
    def step(sim: Sim, jobs: list[JobSpec], now: int) -> list[JobSpec]:
        return ours(sim, jobs, now, weight)

    return step


def ours(sim: Sim, jobs: list[JobSpec], now: int, weight: float = CARBON_WEIGHT) -> list[JobSpec]:
    rel = [
        replace(j, release=0, deadline=min(HORIZON, j.deadline - now))
        for j in jobs
        if j.deadline - now >= j.duration
    ]
    if not rel:
        return list(jobs)
    booked = {p.id: sim.used[i, now : now + HORIZON] for i, p in enumerate(sim.pools)}
    r = schedule_round(
        rel,
        sim.pools,
        horizon=HORIZON,
        start_hour=now % 24,
        carbon_weight=weight,
        booked=booked,
        time_limit=1.5,
    )
    ours.rounds.append(r.elapsed_s)  # type: ignore[attr-defined]
    by = {j.id: j for j in jobs}
    left = [j for j in jobs if j.deadline - now < j.duration]
    for p in r.placements:
        if p.pool_id is None or p.start is None:
            left.append(by[p.job_id])
        else:
            sim.place(by[p.job_id], p.pool_id, now + p.start)
    return left


ours.rounds = []  # type: ignore[attr-defined]


def simulate(
    name: str,
    step: Callable[[Sim, list[JobSpec], int], list[JobSpec]],
    trace: list[TJob],
    hours: int,
    pools: list[PoolSpec],
) -> dict[str, Any]:
    sim = Sim(pools, hours)
    waiting: list[JobSpec] = []
    misses: set[str] = set()
    local = [j for j in trace if j.spec.allowed_provinces == frozenset()]
    todo = [j for j in trace if j.spec.allowed_provinces != frozenset()]
    # important data of provinces without a cluster runs on its own node, as core data does
    node_local = [
        j
        for j in todo
        if j.spec.allowed_provinces is not None
        and not any(p.province in j.spec.allowed_provinces for p in pools)
    ]
    todo = [j for j in todo if j not in node_local]
    k = 0
    t0 = time.perf_counter()
    for now in range(sim.total - 24):
        while k < len(todo) and todo[k].arrival == now:
            waiting.append(todo[k].spec)
            k += 1
        if not waiting:
            if k >= len(todo):
                break
            continue
        nxt = []
        for j in waiting:
            if j.deadline - now < j.duration:  # can no longer finish in time
                misses.add(j.id)
                nxt.append(replace(j, deadline=now + j.duration + HORIZON - 1, interactive=False))
            else:
                nxt.append(j)
        waiting = step(sim, nxt, now)
    elapsed = time.perf_counter() - t0
    violations = sum(
        1
        for job, pool_id, _ in sim.placed
        if job.allowed_provinces is not None
        and sim.pools[sim.idx[pool_id]].province not in job.allowed_provinces
    )
    west = sum(1 for _, pid, _ in sim.placed if topology.CLUSTERS[sim.pools[sim.idx[pid]].cluster].west)
    return {
        "scheduler": name,
        "placed": len(sim.placed),
        "never_placed": len(waiting),
        "node_local": len(local) + len(node_local),
        "cost_cny": round(sim.cost / 100, 2),
        "kg_co2": round(sim.kg, 2),
        "deadline_misses": len(misses),
        "residency_violations": violations,
        "west_share": round(west / max(1, len(sim.placed)), 3),
        "elapsed_s": round(elapsed, 2),
    }


def big_round(pools: list[PoolSpec], method: str) -> dict[str, Any]:
    trace = make_trace(1000, 1, seed=99)
    jobs = [
        replace(j.spec, release=0, deadline=min(HORIZON, j.spec.deadline - j.spec.release))
        for j in trace
        if j.spec.allowed_provinces != frozenset()
    ]
    # a busy hour: every job arrives now
    t0 = time.perf_counter()
    r = schedule_round(
        jobs,
        pools,
        horizon=HORIZON,
        start_hour=14,
        carbon_weight=CARBON_WEIGHT,
        time_limit=1.5,
        method=method,
    )
    wall = time.perf_counter() - t0
    return {
        "jobs": len(jobs),
        "pools": len(pools),
        "method": r.method,
        "status": r.status,
        "seconds": round(wall, 3),
        "unplaced": sum(p.pool_id is None for p in r.placements),
        "candidates": r.candidates,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    n, days = (2000, 2) if a.quick else (10_000, 7)
    pools = make_pools()
    trace = make_trace(n, days)
    hours = days * 24
    nearest = baseline(lambda j, p, now: topology.latency_ms(j.data_province or "beijing", p.cluster))
    cheapest = baseline(lambda j, p, now: p.price)
    green = baseline(
        lambda j, p, now: topology.hourly_factor(p.province, now % 24) * p.pue * (1 - p.green_share)
    )
    runs = (
        ("ours", ours),
        (f"ours_lambda_{GREEN_WEIGHT:g}", ours_with(GREEN_WEIGHT)),
        ("nearest", nearest),
        ("cheapest", cheapest),
        ("carbon_greedy", green),
    )
    results = []
    rounds: list[float] = []
    for name, fn in runs:
        ours.rounds = []  # type: ignore[attr-defined]
        results.append(simulate(name, fn, trace, hours, pools))
        if name == "ours":
            rounds = list(ours.rounds)  # type: ignore[attr-defined]
    by = {r["scheduler"]: r for r in results}
    for r in results:
        print(
            f"{r['scheduler']:>14}: cost {r['cost_cny']:>10} CNY  {r['kg_co2']:>9} kg CO2  "
            f"misses {r['deadline_misses']:>4}  residency violations {r['residency_violations']}  "
            f"west {r['west_share']:.0%}",
            file=sys.stderr,
        )
    big = {m: big_round(pools, m) for m in ("milp", "greedy")}
    out = {
        "bench": "scheduler",
        "quick": a.quick,
        "jobs": n,
        "days": days,
        "pools": len(pools),
        "machine": platform.machine(),
        "results": results,
        "emissions_vs_nearest": round(1 - by["ours"]["kg_co2"] / by["nearest"]["kg_co2"], 3),
        "emissions_vs_nearest_green": round(
            1 - by[f"ours_lambda_{GREEN_WEIGHT:g}"]["kg_co2"] / by["nearest"]["kg_co2"], 3
        ),
        "cost_vs_nearest": round(1 - by["ours"]["cost_cny"] / by["nearest"]["cost_cny"], 3),
        "misses_ours_minus_nearest": by["ours"]["deadline_misses"] - by["nearest"]["deadline_misses"],
        "round_s": {"mean": round(float(np.mean(rounds)), 3), "max": round(float(np.max(rounds)), 3)},
        "round_1000x20": big,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
