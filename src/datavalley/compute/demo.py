"""The demo's computing-power act: pools listed on the market, a private SQL job placed by the scheduler
on a western cluster, run by that pool's worker process, its cost and carbon on the statement."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from datavalley.client import Client


def _step() -> int:
    """The next step number of the demo's story (numbered in the order told)."""
    from datavalley.demo import n

    return n()


def compute_act(console: Console, op: Client, people: dict[str, Any], product_id: str) -> dict[str, Any]:
    from datavalley.market.settlement import yuan

    console.rule("the computing-power network: East Data, West Computing")
    cloud, insurer = people["data_operator"], people["insurer"]
    pools = []
    for body in (
        {
            "name": "张家口 Zhangjiakou general pool",
            "cluster": "zhangjiakou",
            "cores": 2,
            "price": 40,
            "pue": 1.25,
            "green_share": 0.2,
        },
        {
            "name": "贵安 Gui'an green pool",
            "cluster": "guian",
            "cores": 2,
            "price": 28,
            "pue": 1.15,
            "green_share": 0.5,
        },
    ):
        pool = cloud.client.request("POST", "/v1/compute/pools", json=body).json()["data"]
        cloud.client.product_action(pool["product_id"], "submit")
        op.product_action(
            pool["product_id"], "review", {"approve": True, "note": "PUE within the hub target"}
        )
        pools.append(pool)
    t = Table(title="compute pools listed as products (price per core-hour, metered per core-second)")
    for col in ("pool", "cluster", "hub", "PUE (target)", "green", "grid tCO2/MWh (MEE 2022)", "price"):
        t.add_column(col)
    for p in pools:
        t.add_row(
            p["name"],
            p["cluster"],
            p["hub"],
            f"{p['pue']} (≤ {1.2 if p['west'] else 1.25})",
            f"{p['green_share']:.0%}",
            f"{p['grid_factor']:.4f}",
            f"{yuan(p['price'])} CNY",
        )
    console.print(t)
    pool_contracts = {}
    for p in pools:
        c = insurer.client.request_contract(p["product_id"], purpose="compute", max_quantity=10 * 3600).value
        cloud.client.contract_action(c.id, "offer")
        insurer.client.contract_action(c.id, "accept")
        cloud.client.sign_agreement(c.id, cloud.key)
        pool_contracts[p["id"]] = insurer.client.sign_agreement(c.id, insurer.key).value
    data = insurer.client.request_contract(product_id, purpose="risk-control", max_uses=5).value
    people["logistics"].client.contract_action(data.id, "offer")
    insurer.client.contract_action(data.id, "accept")
    people["logistics"].client.sign_agreement(data.id, people["logistics"].key)
    insurer.client.sign_agreement(data.id, insurer.key)
    console.print(
        f"{_step()}. "
        "The insurer buys up to 10 core-hours on each pool (escrowed like any contract) and a second "
        "analytics contract; it submits its private SQL as a job (interactive: start now, ≤ 10 ms)."
    )
    sql = "SELECT dest_province, COUNT(*) AS trips FROM trips GROUP BY dest_province"
    job = insurer.client.request(
        "POST",
        "/v1/compute/jobs",
        json={"contract_id": data.id, "sql": sql, "epsilon": 0.5, "latency_class": "interactive"},
    ).json()["data"]
    pl = job["placement"]
    names = {p["id"]: f"{p['name']} ({p['cluster']})" for p in pools}
    console.print(
        f"   placed on [bold]{names[job['pool_id']]}[/bold] by {pl['method']} "
        f"({job['constraints']['rule']}; data in {job['constraints']['data_province']}, derived from the "
        "registry):"
    )
    for r in pl["reasons"]:
        console.print(f"   • {r}")
    alt = Table(title="the alternatives the scheduler weighed")
    for col in ("pool", "cost (fen)", "kg CO2", "chosen / excluded"):
        alt.add_column(col)
    for a in pl["alternatives"]:
        if a["pool"] not in names:
            continue
        if "excluded" in a:
            alt.add_row(names[a["pool"]], "—", "—", f"[yellow]{a['excluded']}[/yellow]")
        else:
            alt.add_row(
                names[a["pool"]], f"{a['cost_fen']:g}", f"{a['kg_co2']:.5f}", "✔" if a["chosen"] else ""
            )
    console.print(alt)
    out = insurer.client.request("POST", f"/v1/compute/jobs/{job['id']}/run", json={}).json()
    done = out["job"]
    console.print(
        f"{_step()}. "
        f"The pool's worker process ({out['pool']['engine']} with its own core limit and work directory) "
        f"computed the exact aggregates; the node noised them and released {len(out['result']['rows'])} rows."
    )
    stmt = insurer.client.get("/v1/compute/statement")
    st = Table(title="the insurer's compute statement")
    for col in ("job", "pool", "core-hours", "energy kWh", "kg CO2", "charged"):
        st.add_column(col, justify="right")
    for line in stmt["lines"]:
        st.add_row(
            line["job_id"],
            names.get(line["pool_id"], line["pool_id"]),
            f"{line['core_hours']:.5f}",
            f"{line['energy_kwh']:.7f}",
            f"{line['kg_co2']:.7f}",
            f"{yuan(line['amount'])} CNY",
        )
    console.print(st)
    pc = pool_contracts[done["pool_id"]]
    cs = cloud.client.contract_statement(pc.id)
    console.print(
        f"   settled to the pool provider under {pc.id}: released {yuan(cs['released'])} CNY "
        f"(fee {yuan(cs['fees'])}, net {yuan(cs['provider_net'])}), escrow left {yuan(cs['escrow'])}; "
        f"{len(out['receipts'])} ledger receipt(s) for the start and the metering."
    )
    west = next(p for p in pools if p["id"] == done["pool_id"])["west"]
    return {
        "compute_job": done["id"],
        "compute_pool_west": west,
        "compute_amount": done["amount"],
        "compute_kg_co2": done["kg_co2"],
    }
