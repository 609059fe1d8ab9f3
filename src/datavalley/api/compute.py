"""Compute routes: topology, pools, jobs (submit, status, explain, run), placement rounds, statement.

Wire formats: docs/COMPUTE.md. Every route is a thin shell over ``datavalley.compute``; pools are then
traded with the market routes (their products), exactly like data products.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from datavalley.api.deps import Caller, Document, exchange_of, mutate, render
from datavalley.compute import jobs, pools, topology
from datavalley.identity.model import Principal

router = APIRouter(tags=["compute"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewPool(Strict):
    name: str = Field(min_length=1, max_length=200)
    cluster: str = Field(max_length=40)
    province: str | None = Field(default=None, max_length=40)
    cores: int
    memory_gb: int = 4
    gpus: int = 0
    pue: float | None = None
    green_share: float = 0.0
    watts_per_core: float = topology.WATTS_PER_CORE
    price: int
    windows: list[list[int]] | None = None
    description: str = Field(default="", max_length=4000)
    max_core_hours: int | None = None


class NewJob(Strict):
    contract_id: str = Field(max_length=40)
    kind: str = "private_sql"
    sql: str = Field(min_length=1, max_length=100_000)
    epsilon: float | None = None
    cores: int = 1
    memory_gb: int = 1
    duration_s: int = 60
    latency_class: str = "batch"
    deadline_h: int | None = None


class RunJob(Strict):
    engine: str = "duckdb"


def _page(page: Any) -> dict[str, Any]:
    return {"items": [render(i) for i in page.items], "next_cursor": page.next_cursor}


@router.get("/compute/topology")
def get_topology(caller: Principal = Caller) -> Any:
    """The versioned topology: hubs, clusters, PUE targets, latency matrix, grid factors, sources."""
    return topology.as_json()


@router.post("/compute/pools", status_code=201, response_model=Document)
def register_pool(body: NewPool, request: Request, caller: Principal = Caller) -> JSONResponse:
    data = body.model_dump(mode="json")
    return mutate(request, caller, pools.register_pool, body=data, status=201, **data)


@router.get("/compute/pools")
def list_pools(
    request: Request,
    caller: Principal = Caller,
    cluster: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Any:
    return _page(
        exchange_of(request).read(caller, pools.list_pools, cluster=cluster, limit=limit, cursor=cursor)
    )


@router.get("/compute/pools/{pool_id}")
def get_pool(pool_id: str, request: Request, caller: Principal = Caller) -> Any:
    return render(exchange_of(request).read(caller, pools.get_pool, pool_id))


@router.post("/compute/jobs", status_code=201, response_model=Document)
def submit_job(body: NewJob, request: Request, caller: Principal = Caller) -> JSONResponse:
    data = body.model_dump(mode="json")
    return mutate(request, caller, jobs.submit_job, body=data, status=201, **data)


@router.get("/compute/jobs")
def list_jobs(
    request: Request,
    caller: Principal = Caller,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Any:
    return _page(exchange_of(request).read(caller, jobs.list_jobs, status=status, limit=limit, cursor=cursor))


@router.get("/compute/jobs/{job_id}")
def get_job(job_id: str, request: Request, caller: Principal = Caller) -> Any:
    return render(exchange_of(request).read(caller, jobs.get_job, job_id))


@router.get("/compute/jobs/{job_id}/explain")
def explain_job(job_id: str, request: Request, caller: Principal = Caller) -> Any:
    return exchange_of(request).read(caller, jobs.explain_job, job_id)


@router.post("/compute/jobs/{job_id}/run")
def run_job(job_id: str, body: RunJob, request: Request, caller: Principal = Caller) -> Any:
    """The consumer's node runs a placed job on its pool's worker and reports the metering."""
    from datavalley.compute import jobs
    from datavalley.compute.runner import JobRunner, PoolDirectory
    from datavalley.node.query import QueryService

    app = request.app
    ex = exchange_of(request)
    ex.read(caller, jobs.check_runner, job_id)  # authorise before judging the input
    if body.engine not in ("duckdb", "spark"):
        from datavalley.errors import InvalidInput

        raise InvalidInput("engine must be duckdb or spark", field="engine")
    service = getattr(app.state, "query_service", None)
    if service is None:
        service = app.state.query_service = QueryService(ex)
    runner = getattr(app.state, "job_runner", None)
    if runner is None:
        runner = app.state.job_runner = JobRunner(ex, service, PoolDirectory(ex.settings.home))
    return runner.run(caller, job_id, engine=body.engine)


@router.post("/compute/rounds", response_model=Document)
def placement_round(request: Request, caller: Principal = Caller) -> JSONResponse:
    """The operator places every waiting job in one round."""
    return mutate(request, caller, jobs.schedule_jobs, shape=lambda v: v)


@router.get("/compute/statement")
def compute_statement(request: Request, caller: Principal = Caller, participant_id: str | None = None) -> Any:
    return exchange_of(request).read(caller, jobs.compute_statement, participant_id)
