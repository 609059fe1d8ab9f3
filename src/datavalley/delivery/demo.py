"""The demo's delivery act: the insurer reads a licensed extract with the official Delta Sharing client,
then the logistics company traces a leaked piece of it back to the contract."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console

PROVINCE = "贵州"


def delivery_act(
    home: Path, console: Console, app: Any, op: Any, people: dict[str, Any], registered: dict[str, Any]
) -> dict[str, Any]:
    """Run the act on ``app`` served over loopback HTTP; return a summary for the demo's result."""
    import json

    import uvicorn

    console.rule("delivery under contract: Delta Sharing with policies, metering and leak tracing")
    try:
        import delta_sharing  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:  # the `delivery` extra is not installed
        console.print("   (skipped: install the `delivery` extra for the official delta-sharing client)")
        return {}
    logistics, insurer = people["logistics"], people["insurer"]
    trips = registered["resource_ids"]["logistics"]
    product = logistics.client.create_product(
        name="货运明细 Freight trip extract (Delta Sharing)",
        kind="file_delivery",
        resource_ids=[trips],
        price={"model": "per_query", "amount": 1_500},
        terms={
            "purposes": ["insurance-pricing"],
            "max_uses": 20,
            "valid_days": 90,
            "delivery": {
                "columns": [
                    "trip_id",
                    "driver_id",
                    "dest_city",
                    "dest_province",
                    "distance_km",
                    "fare_cny",
                    "month",
                ],
                "pi": "pseudonymise",
                "row_filter": [{"column": "dest_province", "isAnyOf": [PROVINCE]}],
                "watermark": {"columns": {"fare_cny": 0, "distance_km": 0}},
            },
        },
        tags=["freight", "delta-sharing"],
        description="Trips to Guizhou; driver IDs pseudonymised per contract; names and phones never leave.",
    ).value
    logistics.client.product_action(product.id, "submit")
    op.product_action(product.id, "review", {"approve": True, "note": "PI pseudonymised, filter checked"})
    pay = insurer.client.deposit(50_000, "ICBC transfer 2026-11-23 #0051").value
    op.confirm_payment(pay.id)
    cid = insurer.client.request_contract(product.id, purpose="insurance-pricing", max_uses=10).value.id
    logistics.client.contract_action(cid, "offer")
    insurer.client.contract_action(cid, "accept")
    logistics.client.sign_agreement(cid, logistics.key)
    insurer.client.sign_agreement(cid, insurer.key)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        endpoint = f"http://127.0.0.1:{port}/delta-sharing/"
        data, _receipts, _ = insurer.client.post(
            f"/v1/delivery/contracts/{cid}/tokens", {"recipient": "pricing-team", "endpoint": endpoint}
        )
        profile = home / "insurer-pricing.share"
        profile.write_text(json.dumps(data["profile"], indent=2), "utf-8")
        profile.chmod(0o600)
        console.print(
            f"   The insurer downloads its own Delta Sharing profile for contract {cid} "
            f"([cyan]datavalley delivery profile {cid} --out {profile.name}[/cyan]): one bearer token per "
            "contract and recipient, stored hashed, expiring with the contract."
        )
        client = delta_sharing.SharingClient(str(profile))
        table = client.list_all_tables()[0]
        url = f"{profile}#{table.share}.{table.schema}.{table.name}"
        with warnings.catch_warnings():
            # delta-sharing 1.4 passes copy=False to pandas.concat, which pandas 3 deprecates
            warnings.filterwarnings("ignore", message="The copy keyword is deprecated")
            df = delta_sharing.load_as_pandas(url)
            head = delta_sharing.load_as_pandas(url, limit=3)
        console.print(
            f"    the official client reads {table.share}.{table.schema}.{table.name}: {len(df):,} rows, "
            f"columns {list(df.columns)} — only trips to {PROVINCE}, driver names and phones never sent, "
            "driver IDs as per-contract pseudonyms:"
        )
        console.print(head[["trip_id", "driver_id", "dest_province", "fare_cny"]].to_string(index=False))
        uses = insurer.client.uses(cid)
        console.print(
            f"    each query is a metered use on the ledger: {len(uses)} uses, "
            f"{sum(u.amount for u in uses) / 100:.2f} CNY released to the provider."
        )
        leaked = home / "found-on-a-forum.csv"
        df[["dest_city", "fare_cny", "distance_km"]].sample(frac=0.1, random_state=3).sort_values(
            "fare_cny"
        ).to_csv(leaked, index=False)
        resp = logistics.client.request(
            "POST", "/v1/delivery/trace", content=leaked.read_bytes(), params={"filename": leaked.name}
        )
        report = resp.json()["data"]
        named = report["attributed"]
        if named:
            console.print(
                f"   A 10 % extract ({report['rows']} rows, three columns, re-sorted, saved as CSV) "
                "turns up. "
                f"[cyan]datavalley watermark trace {leaked.name}[/cyan] names contract "
                f"[bold]{named['contract_id']}[/bold]: {named['matches']}/{named['pairs']} marks match; "
                f"false-attribution probability ≤ 10^{named['false_attribution_log10']:.0f}."
            )
        else:
            console.print("   [red]the leaked extract could not be attributed[/red]")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return {
        "delivery_contract": cid,
        "delivered_rows": len(df),
        "delivery_uses": len(uses),
        "traced_contract": named["contract_id"] if named else None,
    }
