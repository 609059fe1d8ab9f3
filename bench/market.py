"""Market benchmark: concurrent clients run order → contract → metered uses → settlement on PostgreSQL.

Usage::

    .venv/bin/python bench/market.py            # 8 clients, 1 000 contracts
    .venv/bin/python bench/market.py --quick    # 4 clients, 120 contracts, well under a minute

The program starts its own PostgreSQL 15 (fsync on, synchronous_commit on), initialises an exchange on it,
registers a resource and lists a per-query analytics product, onboards one consumer per client thread
(each with an Ed25519 key and money on account), then times N threads each running, per contract, the
same service calls the API makes: request, offer, accept, provider signature, consumer signature (escrow
+ rights + FINALIZED), ``--uses`` metered uses, and termination (refund of unused escrow) — every call a
committed transaction with its ledger receipts (sequenced and checkpointed), exactly like an API request
minus HTTP.

Baseline, in the same run and on the same server: the durable-commit floor — the same number of
transactions per contract, each a minimal ``UPDATE`` + ``INSERT`` committed by plain psycopg with the same
concurrency. The ratio says how much our service layer, policy engine, accounting and ledger cost over the
database's own commit path. At the end the money invariants are checked.

Every run ends with one JSON line holding all figures and ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from datavalley import demo_data
from datavalley.exchange import Exchange
from datavalley.home import init_home, settings_for
from datavalley.identity import service as identity
from datavalley.identity.model import Principal
from datavalley.keys import public_key_b64, registration_message
from datavalley.market import accounts, contracts, products
from datavalley.market.accounts import invariants
from datavalley.node.analysis import analyse_source, registration_payload
from datavalley.rights import registration

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
PG_DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
console = Console(stderr=True)


def percentile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


class Runner:
    """Runs service functions as the API would: one unit of work each, receipts included."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex

    def __call__(self, principal: Principal, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return self.ex.run(principal, fn, *args, render=lambda v: {"v": v}, **kw).body["v"]


def setup(
    ex: Exchange, token: str, clients: int, tmp: Path
) -> tuple[Principal, str, list[tuple[Principal, Any]]]:
    run = Runner(ex)
    op = ex.authenticate(token)

    def onboard(name: str, roles: list[str], n: int) -> tuple[Principal, Ed25519PrivateKey]:
        from stdnum.cn import uscc

        base = f"9152010{n:010d}"
        p, admin = run(
            op,
            identity.register_participant,
            name=name,
            kind="enterprise",
            country="CN",
            registry_id=base + uscc.calc_check_digit(base),
            roles=roles,
            admin_name=f"admin {n}",
        )
        run(op, identity.change_participant_status, p.id, action="verify", reason="bench")
        issued = run(op, identity.issue_token, admin.id)
        principal = ex.authenticate(issued.secret)
        key = Ed25519PrivateKey.generate()
        pub = public_key_b64(key)
        import base64

        proof = base64.b64encode(key.sign(registration_message(p.id, pub))).decode()
        run(principal, identity.register_key, p.id, public_key=pub, proof=proof)
        return principal, key

    provider, pkey = onboard("Bench Logistics", ["provider"], 1)
    path = demo_data.write_trips(tmp / "trips.csv", 2_000)
    res = run(
        provider,
        registration.register_resource,
        name="trips",
        sector="transport",
        lawful_source="contracts",
        analysis=registration_payload(analyse_source(str(path))),
        published=True,
    )
    run(op, registration.confirm_classification, res.id, grade="general", reason="bench")
    product = run(
        provider,
        products.create_product,
        name="bench analytics",
        kind="private_analytics",
        resource_ids=[res.id],
        price={"model": "per_query", "amount": 100},
        terms={
            "purposes": ["bench"],
            "max_uses": 100,
            "valid_days": 30,
            "privacy": {"min_group_size": 5, "epsilon": 10.0},
        },
    )
    run(provider, products.submit_product, product.id)
    run(op, products.review_product, product.id, approve=True)
    consumers = []
    for i in range(clients):
        principal, key = onboard(f"Bench Consumer {i}", ["consumer"], 100 + i)
        pay = run(principal, accounts.request_deposit, amount=10**12, reference=f"bench {i}")
        run(op, accounts.confirm_payment, pay.id)
        consumers.append((principal, key))
    global PROVIDER_KEY
    PROVIDER_KEY = pkey
    return provider, product.id, consumers


PROVIDER_KEY: Ed25519PrivateKey | None = None


def one_contract(
    run: Runner,
    provider: Principal,
    consumer: Principal,
    ckey: Ed25519PrivateKey,
    product_id: str,
    uses: int,
    n: int,
) -> int:
    """Order → contract → uses → settlement; returns the number of service calls made."""
    import base64

    c = run(consumer, contracts.request_contract, product_id=product_id, purpose="bench", max_uses=uses + 2)
    run(provider, contracts.offer_contract, c.id)
    c = run(consumer, contracts.accept_contract, c.id)
    message = contracts.signing_message(c.id, c.agreement_digest)
    assert PROVIDER_KEY is not None
    run(
        provider,
        contracts.sign_contract,
        c.id,
        signature=base64.b64encode(PROVIDER_KEY.sign(message)).decode(),
    )
    run(consumer, contracts.sign_contract, c.id, signature=base64.b64encode(ckey.sign(message)).decode())
    for u in range(uses):
        run(
            consumer,
            contracts.record_use,
            c.id,
            operation="dv:aggregateQuery",
            purpose="bench",
            request_digest="sha256:" + f"{n:032x}{u:032x}",
            privacy_cost=0.1,
            min_group_size=5,
        )
    run(consumer, contracts.terminate_contract, c.id, reason="settled")
    return 6 + uses


def drive(clients: int, contracts_total: int, work: Callable[[int, int], int]) -> dict[str, Any]:
    """Run ``work(client, n)`` for ``contracts_total`` contracts over ``clients`` threads."""
    latencies: list[float] = []
    calls = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()
    counter = iter(range(contracts_total))

    def worker(i: int) -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            t0 = time.perf_counter()
            try:
                k = work(i, n)
            except BaseException as e:
                errors.append(e)
                return
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                calls[0] += k

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {
        "contracts": len(latencies),
        "wall_s": round(wall, 3),
        "contracts_per_s": round(len(latencies) / wall, 1),
        "calls_per_s": round(calls[0] / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
    }


def baseline(dsn: str, clients: int, contracts_total: int, calls_per_contract: int) -> dict[str, Any]:
    """The durable-commit floor: per contract, one committed UPDATE+INSERT transaction per call we make."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS bench_floor_acc (id int primary key, balance bigint)")
        c.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor_log (id bigserial primary key, acc int, amount bigint)"
        )
        c.execute(
            "INSERT INTO bench_floor_acc SELECT g, 0 FROM generate_series(0, 1000) g ON CONFLICT DO NOTHING"
        )
    conns = [psycopg.connect(dsn) for _ in range(clients)]

    def work(i: int, n: int) -> int:
        conn = conns[i]
        for _ in range(calls_per_contract):
            with conn.transaction():
                conn.execute("UPDATE bench_floor_acc SET balance = balance + 1 WHERE id = %s", (n % 1000,))
                conn.execute("INSERT INTO bench_floor_log (acc, amount) VALUES (%s, 1)", (n % 1000,))
        return calls_per_contract

    try:
        return drive(clients, contracts_total, work)
    finally:
        for c in conns:
            c.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 clients, 120 contracts")
    ap.add_argument("--clients", type=int)
    ap.add_argument("--contracts", type=int)
    ap.add_argument("--uses", type=int, default=3, help="metered uses per contract")
    args = ap.parse_args(argv)
    clients = args.clients or (4 if args.quick else 8)
    total = args.contracts or (120 if args.quick else 1_000)
    sys.path.insert(0, str(TESTS_DIR))
    from pgserver import PostgresServer  # type: ignore[import-not-found, unused-ignore]

    with tempfile.TemporaryDirectory(prefix="dv-bench-market-") as tmpd:
        tmp = Path(tmpd)
        with PostgresServer(tmp / "pg", settings=PG_DURABLE) as pg:
            pg.create_database("bench_market")
            url = pg.url("bench_market")
            home = tmp / "home"
            done = init_home(home, database_url=url)
            ex = Exchange.open(settings_for(home))
            try:
                console.print(
                    f"[bold]market bench[/bold]: {clients} clients, {total} contracts, {args.uses} uses each"
                )
                provider, product_id, consumers = setup(ex, done.token.secret, clients, tmp)
                run = Runner(ex)
                ours = drive(
                    clients,
                    total,
                    lambda i, n: one_contract(
                        run, provider, consumers[i][0], consumers[i][1], product_id, args.uses, n
                    ),
                )
                # Breakdown: the same flow with ledger receipts deferred to the background publisher
                # (events still go through the outbox and onto the log; callers fetch receipts later).
                sync_receipts = ex.ledger.receipts
                ex.ledger.receipts = lambda ids: []  # type: ignore[method-assign]
                ex.ledger.start_publisher()
                try:
                    deferred = drive(
                        clients,
                        total,
                        lambda i, n: one_contract(
                            run, provider, consumers[i][0], consumers[i][1], product_id, args.uses, n + total
                        ),
                    )
                finally:
                    ex.ledger.stop_publisher()
                    ex.ledger.receipts = sync_receipts  # type: ignore[method-assign]
                ex.ledger.sequence_pending()
                ex.ledger.publish()
                with Session(ex.engine) as s:
                    inv = invariants(s)
                floor = baseline(pg.dsn("bench_market"), clients, total, 6 + args.uses)
            finally:
                ex.close()
    ratio = ours["contracts_per_s"] / floor["contracts_per_s"] if floor["contracts_per_s"] else 0.0
    table = Table(title="market: order → contract → uses → settlement (PostgreSQL, durable)")
    for col in ("", "contracts/s", "calls/s", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    table.add_row(
        "datavalley",
        str(ours["contracts_per_s"]),
        str(ours["calls_per_s"]),
        str(ours["p50_ms"]),
        str(ours["p99_ms"]),
    )
    table.add_row(
        "… receipts deferred",
        str(deferred["contracts_per_s"]),
        str(deferred["calls_per_s"]),
        str(deferred["p50_ms"]),
        str(deferred["p99_ms"]),
    )
    table.add_row(
        "commit floor",
        str(floor["contracts_per_s"]),
        str(floor["calls_per_s"]),
        str(floor["p50_ms"]),
        str(floor["p99_ms"]),
    )
    console.print(table)
    console.print(
        f"money invariants: {'[green]intact[/green]' if inv['ok'] else inv['problems']} "
        f"({inv['transactions']} transactions, escrow {inv['escrow_total']})"
    )
    result = {
        "bench": "market",
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "clients": clients,
        "uses_per_contract": args.uses,
        "datavalley": ours,
        "datavalley_receipts_deferred": deferred,
        "commit_floor": floor,
        "ratio_datavalley_to_floor": round(ratio, 3),
        "target_contracts_per_s": 200,
        "invariants_ok": inv["ok"],
    }
    print(json.dumps(result))
    return 0 if inv["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
