"""Benchmark: reading a delivered table with the official delta-sharing client vs plain HTTP.

Setup (not timed): an exchange home, a provider and a consumer, an N-row trip table registered and sold as
a file-delivery product whose contract pseudonymises a personal column, filters rows and watermarks two
numeric columns; ``datavalley serve`` runs as a subprocess.

Measured, in the same run:

* ``prepare_s`` — the first query: snapshot of the registered version and the policy work (columns,
  pseudonyms, filter, watermark) by DuckDB, cached per (recipient, data version);
* ``client`` — ``delta_sharing.load_as_pandas`` end to end (metadata, metered query, signed-URL
  downloads, Parquet → pandas), best and median of ``--reads`` runs;
* ``baseline`` — the same Parquet files read the way the client reads them (fsspec HTTP + pyarrow →
  pandas) from a plain static file server (uvicorn + Starlette StaticFiles) on the same machine;
* ``query_latency_ms`` — server latency of ``POST …/query`` (token check, cached plan, metering with a
  ledger receipt, URL signing), p50/p95.

Target: client throughput ≥ 0.8 × baseline. Ends with ONE JSON line.

    PYTHONPATH=src .venv/bin/python bench/delivery.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DATAVALLEY = str(Path(sys.executable).parent / "datavalley")
REGIONS = ["east", "west", "north", "south", "centre", "coast", "hills", "islands"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


def _uscc(n: int) -> str:
    from stdnum.cn import uscc

    base = f"91440300279{n:06d}"
    return base + uscc.calc_check_digit(base)


def _make_table(path: Path, rows: int) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(
        f"""COPY (
            SELECT i AS trip_id,
                   '5201' || lpad(CAST((i * 7919) % 99999999 AS VARCHAR), 14, '0') AS driver_id,
                   ['{"','".join(REGIONS)}'][1 + (i * 31) % 8] AS region,
                   CAST(3 + (i * 17) % 900 AS INTEGER) AS distance_km,
                   round(15 + ((i * 7331) % 398500) / 100.0, 2) AS fare_cny,
                   DATE '2026-01-01' + CAST(i % 300 AS INTEGER) AS day
            FROM range({rows}) t(i)
        ) TO '{path}' (FORMAT parquet, COMPRESSION zstd)"""
    )
    con.close()


def _setup(home: Path, data: Path) -> tuple[str, str, Any]:
    """Parties, resource, product, contract, profile. Returns (profile path, table url, cleanup)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from datavalley.api.app import create_app
    from datavalley.client import Client
    from datavalley.exchange import Exchange
    from datavalley.home import settings_for
    from datavalley.node.analysis import analyse_source, location_of, registration_payload
    from datavalley.node.registry import NodeRegistry

    token = json.loads((home / "bench-operator.json").read_text())["token"]
    ex = Exchange.open(settings_for(home))
    app = create_app(ex)
    op = Client.in_process(app, token)
    parties = {}
    for i, (name, roles) in enumerate([("provider", ["provider"]), ("consumer", ["consumer"])]):
        p, m = op.register_participant(
            name=f"Bench {name}", kind="enterprise", registry_id=_uscc(i + 1), roles=roles, admin_name=name
        ).value
        op.change_participant_status(p.id, "verify")
        c = Client.in_process(app, op.issue_token(m.id).value.secret)
        key = Ed25519PrivateKey.generate()
        c.register_key(p.id, key)
        parties[name] = (p, c, key)
    (_, pc, pkey), (_, cc, ckey) = parties["provider"], parties["consumer"]
    analysis = analyse_source(str(data))
    rid = pc.register_resource(
        name="Trips",
        sector="transport",
        lawful_source="service contracts",
        analysis=registration_payload(analysis),
        published=True,
    ).value.id
    NodeRegistry(home).record(rid, location_of(analysis.source, analysis.fingerprint))
    op.resource_action(rid, "classification", {"grade": "general", "reason": "bench"})
    product = pc.create_product(
        name="Trips extract",
        kind="file_delivery",
        resource_ids=[rid],
        price={"model": "per_query", "amount": 1},
        terms={
            "purposes": ["research"],
            "max_uses": 100_000,
            "valid_days": 30,
            "delivery": {
                "pi": "pseudonymise",
                "row_filter": [{"column": "region", "isAnyOf": REGIONS[:7]}],
                "watermark": {"columns": {"fare_cny": 2, "distance_km": 0}},
            },
        },
    ).value
    pc.product_action(product.id, "submit")
    op.product_action(product.id, "review", {"approve": True})
    pay = cc.deposit(10_000_000, "bench").value
    op.confirm_payment(pay.id)
    cid = cc.request_contract(product.id, purpose="research", max_uses=100_000).value.id
    pc.contract_action(cid, "offer")
    cc.contract_action(cid, "accept")
    pc.sign_agreement(cid, pkey)
    cc.sign_agreement(cid, ckey)
    return cid, product.id, (ex, op, pc, cc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300k rows, fewer repetitions (< 1 minute)")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--reads", type=int, default=None)
    ap.add_argument("--latency-queries", type=int, default=None)
    args = ap.parse_args()
    rows = args.rows or (300_000 if args.quick else 10_000_000)
    reads = args.reads or (2 if args.quick else 5)
    nlat = args.latency_queries or (10 if args.quick else 30)
    started = time.perf_counter()
    warnings.filterwarnings("ignore", message="The copy keyword is deprecated")

    import delta_sharing
    import fsspec
    import pandas as pd
    from pyarrow.dataset import dataset

    from datavalley.home import init_home

    with tempfile.TemporaryDirectory(prefix="dv-bench-delivery-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        done = init_home(home)
        (home / "bench-operator.json").write_text(json.dumps({"token": done.token.secret}))
        port = _port()
        env = {**os.environ, "DATAVALLEY_HOME": str(home)}
        log = (tmp / "serve.log").open("w")
        server = subprocess.Popen(
            [DATAVALLEY, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        static = None
        try:
            data = tmp / "trips.parquet"
            t = time.perf_counter()
            _make_table(data, rows)
            gen_s = time.perf_counter() - t
            t = time.perf_counter()
            cid, product_id, keep = _setup(home, data)
            setup_s = time.perf_counter() - t
            ex, op, pc, cc = keep
            base = f"http://127.0.0.1:{port}"
            _wait(f"{base}/v1/health", server, "datavalley serve")
            issued, _, _ = cc.post(
                f"/v1/delivery/contracts/{cid}/tokens",
                {"recipient": "bench", "endpoint": f"{base}/delta-sharing/"},
            )
            profile = tmp / "bench.share"
            profile.write_text(json.dumps(issued["profile"]))
            bearer = {"Authorization": f"Bearer {issued['profile']['bearerToken']}"}
            query = (
                f"{base}/delta-sharing/shares/{cid.lower()}/schemas/{product_id.lower()}/tables/trips/query"
            )

            t = time.perf_counter()
            first = httpx.post(query, json={}, headers=bearer, timeout=900)
            prepare_s = time.perf_counter() - t
            first.raise_for_status()
            files = [json.loads(x)["file"] for x in first.text.splitlines()[2:]]
            delivered_rows = sum(json.loads(f["stats"])["numRecords"] for f in files)
            delivered_bytes = sum(f["size"] for f in files)

            url = f"{profile}#{cid.lower()}.{product_id.lower()}.trips"
            if os.environ.get("DV_BENCH_PROFILE"):
                import cProfile
                import pstats

                delta_sharing.load_as_pandas(url)
                cProfile.runctx("delta_sharing.load_as_pandas(url)", globals(), locals(), str(tmp / "p"))
                pstats.Stats(str(tmp / "p"), stream=sys.stderr).sort_stats("cumulative").print_stats(30)
            # baseline server: the very same files from a plain static file server
            sport = _port()
            cache = home / "node" / "delivery" / "cache"
            static = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys, uvicorn; from starlette.applications import Starlette;"
                    "from starlette.routing import Mount; from starlette.staticfiles import StaticFiles;"
                    "app = Starlette(routes=[Mount('/', StaticFiles(directory=sys.argv[1]))]);"
                    "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[2]), log_level='warning')",
                    str(cache),
                    str(sport),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            plain = [f"http://127.0.0.1:{sport}/" + f["url"].split("/files/")[1].split("?")[0] for f in files]
            _wait(plain[0], static, "static server")
            fs = fsspec.filesystem("http")

            def read_all(urls: list[str]) -> float:
                t = time.perf_counter()
                parts = [
                    dataset(source=u, format="parquet", filesystem=fs)
                    .to_table()
                    .to_pandas(date_as_object=True, use_threads=False, split_blocks=False, self_destruct=True)
                    for u in urls
                ]
                frame = pd.concat(parts, axis=0, ignore_index=True)
                took = time.perf_counter() - t
                assert len(frame) == delivered_rows
                return took

            def client_read() -> float:
                t = time.perf_counter()
                df = delta_sharing.load_as_pandas(url)
                took = time.perf_counter() - t
                assert len(df) == delivered_rows
                return took

            # interleaved rounds, so that the load of the shared machine hits all three alike
            client_runs, base_runs, node_runs = [], [], []
            for _ in range(reads):
                client_runs.append(client_read())
                base_runs.append(read_all(plain))
                fresh = httpx.post(query, json={}, headers=bearer, timeout=60)  # URLs live ≤ 15 minutes
                signed = [json.loads(x)["file"]["url"] for x in fresh.text.splitlines()[2:]]
                # the same reader on this node's signed URLs: separates file serving from protocol overhead
                node_runs.append(read_all(signed))

            lat = []
            for _ in range(nlat):
                t = time.perf_counter()
                r = httpx.post(query, json={}, headers=bearer, timeout=60)
                lat.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
            lat.sort()
            uses = len(cc.uses(cid))
            for c in (op, pc, cc):
                c.close()
            ex.close()
        finally:
            for proc in (server, static):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=30)
            log.close()

    best_client, best_base = min(client_runs), min(base_runs)
    ratio = best_base / best_client
    out = {
        "bench": "delivery",
        "quick": args.quick,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "rows": rows,
        "delivered_rows": delivered_rows,
        "delivered_mb": round(delivered_bytes / 1e6, 1),
        "files": len(files),
        "generate_s": round(gen_s, 2),
        "setup_s": round(setup_s, 2),
        "prepare_s": round(prepare_s, 2),
        "client_s": [round(x, 2) for x in client_runs],
        "baseline_s": [round(x, 2) for x in base_runs],
        "signed_urls_s": [round(x, 2) for x in node_runs],
        "client_rows_per_s": round(delivered_rows / best_client),
        "baseline_rows_per_s": round(delivered_rows / best_base),
        "client_median_s": round(statistics.median(client_runs), 2),
        "ratio": round(ratio, 3),
        "ratio_target": 0.8,
        "meets_target": ratio >= 0.8,
        "query_latency_ms": {
            "p50": round(lat[len(lat) // 2], 1),
            "p95": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))], 1),
            "max": round(lat[-1], 1),
            "n": len(lat),
        },
        "metered_uses": uses,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
