"""Governance benchmark: what checking rights and status at every use costs a metered use.

Usage::

    .venv/bin/python bench/governance.py            # 2 000 uses per leg, SQLite
    .venv/bin/python bench/governance.py --quick    # 100 uses per leg, about a minute on a loaded machine

The program initialises an exchange on SQLite (WAL, synchronous=FULL), lists a per-query analytics
product and finalizes contracts on it (bench/market.py's setup), then times ``contracts.record_use`` —
one committed unit of work each, ledger receipts included, exactly as the API runs it — in two legs of the
same run, interleaved in rounds:

- **ours**: ``record_use`` as shipped, which calls ``market.governance.check_use_allowed`` (contract,
  participants, resources, the provider's title, the consumer's right) before metering;
- **baseline**: the same ``record_use`` with the check replaced by a no-op.

It also times ``check_use_allowed`` alone in a read-only unit of work. Every run ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from datavalley.exchange import Exchange
from datavalley.home import init_home, settings_for
from datavalley.market import contracts, governance

sys.path.insert(0, str(Path(__file__).resolve().parent))
import market as market_bench

console = Console(stderr=True)


def _contract(
    run: market_bench.Runner, provider: Any, consumer: Any, key: Any, product_id: str, uses: int
) -> str:
    import base64

    c = run(consumer, contracts.request_contract, product_id=product_id, purpose="bench", max_uses=uses)
    run(provider, contracts.offer_contract, c.id)
    c = run(consumer, contracts.accept_contract, c.id)
    message = contracts.signing_message(c.id, c.agreement_digest)
    assert market_bench.PROVIDER_KEY is not None
    run(
        provider,
        contracts.sign_contract,
        c.id,
        signature=base64.b64encode(market_bench.PROVIDER_KEY.sign(message)).decode(),
    )
    run(consumer, contracts.sign_contract, c.id, signature=base64.b64encode(key.sign(message)).decode())
    return str(c.id)


def _uses(run: market_bench.Runner, consumer: Any, cid: str, n: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        run(
            consumer,
            contracts.record_use,
            cid,
            operation="dv:aggregateQuery",
            purpose="bench",
            request_digest="sha256:" + f"{tag}{i:060x}"[:64].rjust(64, "0"),
            privacy_cost=0.0,
            min_group_size=5,
        )
        out.append(time.perf_counter() - t)
    return out


def _summary(lat: list[float]) -> dict[str, float]:
    s = sorted(lat)
    return {
        "uses_per_s": round(len(s) / sum(s), 1),
        "p50_ms": round(statistics.median(s) * 1000, 3),
        "p99_ms": round(s[min(len(s) - 1, round(0.99 * (len(s) - 1)))] * 1000, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 uses per leg")
    ap.add_argument("--uses", type=int)
    args = ap.parse_args(argv)
    total = args.uses or (100 if args.quick else 2_000)
    rounds = 5
    per_round = max(1, total // rounds)
    with tempfile.TemporaryDirectory(prefix="dv-bench-governance-") as tmpd:
        tmp = Path(tmpd)
        done = init_home(tmp / "home")
        ex = Exchange.open(settings_for(tmp / "home"))
        try:
            provider, product_id, consumers = market_bench.setup(ex, done.token.secret, 1, tmp)
            consumer, key = consumers[0]
            run = market_bench.Runner(ex)
            real = contracts.check_use_allowed
            ours: list[float] = []
            base: list[float] = []
            for r in range(rounds):
                # the product allows 100 uses per contract: a fresh contract per 100 uses, both legs alike
                for leg, sink in (("a", ours), ("b", base)):
                    if leg == "b":
                        contracts.check_use_allowed = lambda ctx, row, **kw: None  # type: ignore[assignment,misc]
                    try:
                        left = per_round
                        while left > 0:
                            n = min(left, 100)
                            cid = _contract(run, provider, consumer, key, product_id, 100)
                            sink.extend(_uses(run, consumer, cid, n, f"{leg}{r:02d}{left:06d}"))
                            left -= n
                    finally:
                        contracts.check_use_allowed = real  # type: ignore[misc]
            checks: list[float] = []
            cid = _contract(run, provider, consumer, key, product_id, 100)
            for _ in range(total):
                t = time.perf_counter()
                ex.read(consumer, governance.check_contract_use, cid, purpose="bench", region="CN")
                checks.append(time.perf_counter() - t)
        finally:
            ex.close()
    o, b, c = _summary(ours), _summary(base), _summary(checks)
    table = Table(title=f"record_use on SQLite, {len(ours)} uses per leg")
    for col in ("", "uses/s", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    table.add_row("with check_use_allowed", str(o["uses_per_s"]), str(o["p50_ms"]), str(o["p99_ms"]))
    table.add_row("baseline (no check)", str(b["uses_per_s"]), str(b["p50_ms"]), str(b["p99_ms"]))
    table.add_row("use-check alone (read)", str(c["uses_per_s"]), str(c["p50_ms"]), str(c["p99_ms"]))
    console.print(table)
    result = {
        "bench": "governance",
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "backend": "sqlite",
        "uses_per_leg": len(ours),
        "with_check": o,
        "baseline_no_check": b,
        "check_alone": c,
        "overhead_p50_ms": round(o["p50_ms"] - b["p50_ms"], 3),
        "ratio_throughput": round(o["uses_per_s"] / b["uses_per_s"], 3) if b["uses_per_s"] else 0.0,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
