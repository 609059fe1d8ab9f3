"""CLI groups: compute pools and jobs (thin shells over the API; docs/COMPUTE.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from datavalley.cli.state import CliState, console, kv_table, list_table, state
from datavalley.errors import InvalidInput

pools_app = typer.Typer(
    help="Compute pools: register on a cluster (listed as products), list, topology, run a worker.",
    no_args_is_help=True,
)
jobs_app = typer.Typer(
    help="Compute jobs: submit, status, explain the placement, run on the pool, statement.",
    no_args_is_help=True,
)


def _print(st: CliState, value: Any, receipts: list[Any] | None = None) -> None:
    if st.as_json:
        typer.echo(json.dumps(value if receipts is None else {"data": value, "receipts": receipts}, indent=2))
        return
    console.print_json(json.dumps(value, ensure_ascii=False))
    for r in receipts or []:
        console.print(f"[dim]ledger receipt: entry {r['index']}[/dim]")


def _windows(value: str | None) -> list[list[int]] | None:
    if not value:
        return None
    out = []
    for part in value.split(","):
        a, sep, b = part.partition("-")
        if not sep or not a.strip().isdigit() or not b.strip().isdigit():
            raise InvalidInput("--windows is like 22-6,12-14 (hours of day)", field="windows")
        out.append([int(a), int(b)])
    return out


@pools_app.command("register")
def register(
    ctx: typer.Context,
    name: str = typer.Option(..., help="pool name"),
    cluster: str = typer.Option(..., help="cluster ID (datavalley pools topology)"),
    cores: int = typer.Option(..., help="cores offered"),
    price: int = typer.Option(..., help="fen per core-hour"),
    province: str | None = typer.Option(None, help="for clusters spanning provinces"),
    memory_gb: int = typer.Option(4),
    gpus: int = typer.Option(0),
    pue: float | None = typer.Option(None, help="default: the hub's PUE target"),
    green_share: float = typer.Option(0.0, help="share of green electricity, 0–1"),
    windows: str | None = typer.Option(None, help="availability windows, e.g. 22-6,12-14 (CST)"),
    max_core_hours: int | None = typer.Option(None, help="most core-hours one contract may buy"),
) -> None:
    """Register a pool; its compute_pool product is created as a draft (then `products submit`)."""
    st = state(ctx)
    body = {
        "name": name,
        "cluster": cluster,
        "cores": cores,
        "price": price,
        "province": province,
        "memory_gb": memory_gb,
        "gpus": gpus,
        "pue": pue,
        "green_share": green_share,
        "windows": _windows(windows),
        "max_core_hours": max_core_hours,
    }
    r = st.client().request("POST", "/v1/compute/pools", json=body).json()
    _print(st, r["data"], r["receipts"])


@pools_app.command("list")
def list_pools(ctx: typer.Context, cluster: str | None = typer.Option(None)) -> None:
    """Pools on the market (and your own)."""
    st = state(ctx)
    data = st.client().request("GET", "/v1/compute/pools", params={"cluster": cluster, "limit": 200}).json()
    if st.as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    rows = [
        [p["id"], p["name"], p["cluster"], p["province"], p["cores"], p["price"], p["pue"], p["green_share"]]
        for p in data["items"]
    ]
    console.print(
        list_table(
            "compute pools",
            ["id", "name", "cluster", "province", "cores", "fen/core-h", "PUE", "green"],
            rows,
        )
    )


@pools_app.command("show")
def show(ctx: typer.Context, pool_id: str) -> None:
    """One pool: cluster, capacity, PUE, green share, price and availability."""
    st = state(ctx)
    _print(st, st.client().request("GET", f"/v1/compute/pools/{pool_id}").json())


@pools_app.command("topology")
def show_topology(ctx: typer.Context) -> None:
    """Hubs, clusters, PUE targets, grid factors and the latency matrix, with sources."""
    st = state(ctx)
    data = st.client().request("GET", "/v1/compute/topology").json()
    if st.as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    prov = {p["code"]: p for p in data["provinces"]}
    rows = [
        [
            c["id"],
            c["name_zh"],
            c["hub"],
            ", ".join(c["provinces"]),
            "west" if c["west"] else "east",
            f"≤ {c['pue_target']}",
            " / ".join(f"{prov[p]['grid_factor']:.4f}" for p in c["provinces"]),
        ]
        for c in data["clusters"]
    ]
    console.print(
        list_table(
            f"topology {data['version']}",
            ["cluster", "名称", "hub", "province", "side", "PUE", "tCO2/MWh"],
            rows,
        )
    )


@pools_app.command("worker")
def worker(
    pool: str = typer.Option(..., help="the pool this worker serves"),
    cores: int = typer.Option(..., help="core limit"),
    workdir: Path = typer.Option(..., help="work directory (staged data is deleted after each job)"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8700),
) -> None:
    """Run a pool worker (needs DATAVALLEY_POOL_TOKEN); point DATAVALLEY_POOLS at it from the node."""
    from datavalley.compute.worker import Worker, serve

    token = os.environ.get("DATAVALLEY_POOL_TOKEN", "")
    if len(token) < 16:
        raise InvalidInput("DATAVALLEY_POOL_TOKEN (at least 16 characters) must be set", field="token")
    serve(Worker(pool, cores, workdir, token), host, port)


@jobs_app.command("submit")
def submit(
    ctx: typer.Context,
    sql: str = typer.Argument(..., help="private SQL to run under the data contract"),
    contract: str = typer.Option(..., "--contract", help="the data contract the job works under"),
    epsilon: float | None = typer.Option(None),
    cores: int = typer.Option(1),
    memory_gb: int = typer.Option(1),
    duration_s: int = typer.Option(60, help="expected duration"),
    latency_class: str = typer.Option("batch", help="interactive (start now, ≤ 10 ms) or batch"),
    deadline_h: int | None = typer.Option(None, help="hours from now by which it must finish"),
) -> None:
    """Submit a job; the exchange places it at once (pool, start, reasons)."""
    st = state(ctx)
    body = {
        "contract_id": contract,
        "sql": sql,
        "epsilon": epsilon,
        "cores": cores,
        "memory_gb": memory_gb,
        "duration_s": duration_s,
        "latency_class": latency_class,
        "deadline_h": deadline_h,
    }
    r = st.client().request("POST", "/v1/compute/jobs", json=body).json()
    _print(st, r["data"], r["receipts"])


@jobs_app.command("status")
def status(ctx: typer.Context, job_id: str) -> None:
    """A job's state, placement, start time, metered core-hours, energy and emissions."""
    st = state(ctx)
    j = st.client().request("GET", f"/v1/compute/jobs/{job_id}").json()
    if st.as_json:
        typer.echo(json.dumps(j, indent=2))
        return
    console.print(
        kv_table(
            f"job {j['id']}",
            [
                ("status", j["status"]),
                ("pool", j["pool_id"]),
                ("start", j["start_at"]),
                ("constraint", j["constraints"].get("rule")),
                ("core-hours", j["core_hours"]),
                ("energy kWh", f"{j['energy_kwh']:.6f}"),
                ("kg CO2", f"{j['kg_co2']:.6f}"),
                ("charged (fen)", j["amount"]),
                ("error", j["error"]),
            ],
        )
    )


@jobs_app.command("explain")
def explain(ctx: typer.Context, job_id: str) -> None:
    """Why the job runs where and when: constraints, reasons, every pool's best option or exclusion."""
    st = state(ctx)
    e = st.client().request("GET", f"/v1/compute/jobs/{job_id}/explain").json()
    if st.as_json:
        typer.echo(json.dumps(e, indent=2, ensure_ascii=False))
        return
    p = e["placement"] or {}
    console.print(
        f"[bold]{job_id}[/bold] {e['status']} on {p.get('pool_id')} at +{p.get('start')} h "
        f"({p.get('method')}); rule: {e['constraints'].get('rule')}"
    )
    for r in p.get("reasons", []):
        console.print(f"  • {r}")
    rows = [
        [
            a["pool"],
            a.get("excluded") or "",
            a.get("best_start", ""),
            a.get("cost_fen", ""),
            a.get("kg_co2", ""),
            "✔" if a.get("chosen") else "",
        ]
        for a in p.get("alternatives", [])
    ]
    console.print(list_table("alternatives", ["pool", "excluded", "start", "fen", "kg CO2", "chosen"], rows))


@jobs_app.command("run")
def run(
    ctx: typer.Context, job_id: str, engine: str = typer.Option("duckdb", help="duckdb or spark")
) -> None:
    """Run a placed job on its pool's worker (this node ships the data; only noised results return)."""
    st = state(ctx)
    out = st.client().request("POST", f"/v1/compute/jobs/{job_id}/run", json={"engine": engine}).json()
    _print(st, out)


@jobs_app.command("list")
def list_jobs(ctx: typer.Context, status: str | None = typer.Option(None)) -> None:
    """Your jobs (all jobs for the operator)."""
    st = state(ctx)
    data = st.client().request("GET", "/v1/compute/jobs", params={"status": status, "limit": 200}).json()
    if st.as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    rows = [
        [j["id"], j["status"], j["pool_id"], j["start_at"], j["amount"], f"{j['kg_co2']:.6f}"]
        for j in data["items"]
    ]
    console.print(list_table("jobs", ["id", "status", "pool", "start", "fen", "kg CO2"], rows))


@jobs_app.command("round")
def placement_round(ctx: typer.Context) -> None:
    """(operator) Place every waiting job in one round."""
    st = state(ctx)
    r = st.client().request("POST", "/v1/compute/rounds").json()
    _print(st, r["data"], r["receipts"])


@jobs_app.command("statement")
def statement(ctx: typer.Context, participant: str | None = typer.Option(None)) -> None:
    """Core-hours, energy, emissions and charges of your finished jobs."""
    st = state(ctx)
    _print(
        st, st.client().request("GET", "/v1/compute/statement", params={"participant_id": participant}).json()
    )


__all__ = ["jobs_app", "pools_app"]
