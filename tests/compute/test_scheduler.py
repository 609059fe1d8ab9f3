"""The scheduler as pure functions: hard constraints always hold (property-tested against random rounds),
the MILP is never worse than its greedy start, carbon-aware shifting in time and space, explanations
that name the binding constraint, and the documented greedy fallback."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datavalley.compute import topology
from datavalley.compute.scheduler import JobSpec, PoolSpec, schedule_round

EAST = PoolSpec("east", "zhangjiakou", "hebei", 8, 40, 1.25, 0.1, memory_gb=32)
WEST = PoolSpec("west", "qingyang", "gansu", 8, 25, 1.15, 0.4, memory_gb=16)
SOUTH = PoolSpec("south", "shaoguan", "guangdong", 8, 42, 1.25, 0.1, memory_gb=32)
POOLS = [EAST, WEST, SOUTH]


def check_hard_constraints(jobs: list[JobSpec], pools: list[PoolSpec], result, horizon: int) -> None:
    by_pool = {p.id: p for p in pools}
    used = {p.id: np.zeros(horizon) for p in pools}
    mem = {p.id: np.zeros(horizon) for p in pools}
    for job, pl in zip(jobs, result.placements, strict=True):
        assert pl.job_id == job.id
        if pl.pool_id is None:
            continue
        pool = by_pool[pl.pool_id]
        assert pl.start is not None and job.release <= pl.start
        assert pl.start + job.duration <= job.deadline, "deadline"
        if job.interactive:
            assert pl.start == job.release
        if job.allowed_provinces is not None:
            assert pool.province in job.allowed_provinces, "residency"
        if job.allowed_pools is not None:
            assert pool.id in job.allowed_pools
        used[pool.id][pl.start : pl.start + job.duration] += job.cores
        mem[pool.id][pl.start : pl.start + job.duration] += job.memory_gb
    for pid, u in used.items():
        assert np.all(u <= by_pool[pid].cores), "capacity"
        assert np.all(mem[pid] <= by_pool[pid].memory_gb + 1e-9), "memory"


job_st = st.builds(
    lambda i, cores, dur, slack, inter, prov, grade, gb: JobSpec(
        id=f"j{i}",
        cores=cores,
        duration=1 if inter else dur,
        release=0,
        deadline=1 if inter else dur + slack,
        interactive=inter,
        allowed_provinces=frozenset({prov}) if grade == "important" else None,
        data_province=prov,
        max_latency_ms=10.0 if inter else None,
        memory_gb=gb,
    ),
    st.integers(0, 10**6),
    st.integers(1, 8),
    st.integers(1, 6),
    st.integers(0, 12),
    st.booleans(),
    st.sampled_from(["hebei", "gansu", "guangdong", "beijing"]),
    st.sampled_from(["general", "important"]),
    st.sampled_from([0, 1, 4, 12, 24]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(job_st, min_size=1, max_size=25, unique_by=lambda j: j.id), st.integers(0, 23))
def test_every_placement_respects_capacity_deadlines_and_residency(jobs: list[JobSpec], hour: int) -> None:
    milp = schedule_round(jobs, POOLS, horizon=24, start_hour=hour, time_limit=2.0)
    greedy = schedule_round(jobs, POOLS, horizon=24, start_hour=hour, method="greedy")
    check_hard_constraints(jobs, POOLS, milp, 24)
    check_hard_constraints(jobs, POOLS, greedy, 24)
    # HiGHS starts from the greedy solution: it can only improve on it
    assert milp.objective <= greedy.objective + 1e-6


def test_batch_job_moves_west_and_into_the_solar_hours() -> None:
    job = JobSpec("b", 4, 2, 0, 24, data_province="beijing")
    r = schedule_round([job], POOLS, horizon=24, start_hour=0)
    p = r.placements[0]
    assert p.pool_id == "west" and r.method == "milp"
    # Gansu's modelled intensity dips around noon (CST): a batch job with a day of slack runs then
    assert 9 <= p.start <= 13
    assert any("time-shifted" in x for x in p.reasons) and any("east→west" in x for x in p.reasons)
    alts = {a["pool"]: a for a in p.alternatives}
    assert alts["east"]["kg_co2"] > alts["west"]["kg_co2"] and alts["east"]["cost_fen"] > p.cost_fen
    asap = topology.kg_co2(
        8, pue=1.15, factor=topology.hourly_factor("gansu", 0), green_share=0.4, watts=topology.WATTS_PER_CORE
    )
    assert p.kg_co2 < asap


def test_important_data_stays_in_its_province_and_the_explanation_says_so() -> None:
    job = JobSpec(
        "imp",
        2,
        1,
        0,
        4,
        data_province="hebei",
        allowed_provinces=frozenset({"hebei"}),
        residency_reason="important data stays in hebei",
    )
    p = schedule_round([job], POOLS, horizon=24).placements[0]
    assert p.pool_id == "east"
    assert "residency: important data stays in hebei" in p.reasons
    assert {a["pool"]: a.get("excluded") for a in p.alternatives}["west"].startswith("residency")


def test_core_data_is_never_placed() -> None:
    job = JobSpec("core", 1, 1, 0, 4, data_province="beijing", allowed_provinces=frozenset())
    p = schedule_round([job], POOLS, horizon=24).placements[0]
    assert p.pool_id is None and "unplaced: no pool satisfies its constraints" in p.reasons


def test_interactive_jobs_respect_the_latency_bound() -> None:
    job = JobSpec("i", 1, 1, 0, 1, interactive=True, data_province="guangdong", max_latency_ms=10.0)
    p = schedule_round([job], POOLS, horizon=24).placements[0]
    # Qingyang is ~12 ms from Guangzhou: the cheap western pool is out, Shaoguan wins
    assert p.pool_id == "south" and p.start == 0
    assert any(r.startswith("latency") for r in p.reasons)


def test_capacity_binds_and_the_runner_up_is_explained() -> None:
    jobs = [
        JobSpec(f"j{i}", 8, 1, 0, 1, interactive=True, data_province="beijing", max_latency_ms=10.0)
        for i in range(3)
    ]
    r = schedule_round(jobs, POOLS, horizon=24)
    # Shaoguan is > 10 ms from Beijing: two full pools for three full-pool jobs
    assert sorted(p.pool_id or "-" for p in r.placements) == ["-", "east", "west"]
    by = {p.pool_id: p for p in r.placements}
    assert any(x.startswith("capacity: its cheapest option (west") for x in by["east"].reasons)
    assert "unplaced: no candidate fits the remaining capacity before the deadline" in by[None].reasons


def test_memory_is_a_capacity_too() -> None:
    # the western pool is cheapest but has 16 GB: two 12 GB jobs cannot share it
    jobs = [JobSpec(f"m{i}", 1, 2, 0, 2, data_province="beijing", memory_gb=12) for i in range(2)]
    r = schedule_round(jobs, POOLS, horizon=24)
    assert sorted(p.pool_id or "-" for p in r.placements) in (["east", "west"], ["south", "west"])
    big = JobSpec("huge", 1, 1, 0, 4, data_province="beijing", memory_gb=64)
    p = schedule_round([big], POOLS, horizon=24).placements[0]
    assert p.pool_id is None and all(a["excluded"].startswith("size") for a in p.alternatives)


def test_without_highs_the_greedy_fallback_places_the_round(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "highspy", None)  # import fails as if the extra were not installed
    jobs = [JobSpec(f"j{i}", 2, 2, 0, 12, data_province="shanghai") for i in range(10)]
    r = schedule_round(jobs, POOLS, horizon=24)
    assert r.method == "greedy" and r.notes and "fallback" in r.notes[0]
    check_hard_constraints(jobs, POOLS, r, 24)
    assert all(p.pool_id is not None for p in r.placements)


def test_a_round_of_200_jobs_finishes_within_its_time_limit() -> None:
    jobs = [
        JobSpec(f"j{i}", 1 + i % 8, 1 + i % 5, 0, 6 + i % 20, data_province=["beijing", "shanghai"][i % 2])
        for i in range(200)
    ]
    pools = [
        PoolSpec(f"{c.id}-{k}", c.id, c.provinces[0], 32, 30 if c.west else 45, 1.2, 0.2)
        for c in topology.CLUSTERS.values()
        for k in range(2)
    ]
    r = schedule_round(jobs, pools, horizon=48, time_limit=1.0)
    assert r.elapsed_s < 3.0  # the limit bounds the solver; generous margin for a loaded CI machine
    check_hard_constraints(jobs, pools, r, 48)
