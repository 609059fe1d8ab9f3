"""Cross-border benchmark: counting people on the node with sketches, merging them on the exchange, and
deciding pathways.

Usage::

    .venv/bin/python bench/crossborder.py            # 1M identifiers
    .venv/bin/python bench/crossborder.py --quick    # 200k identifiers, well under a minute

Measured in the same run:

* node side: HMAC-SHA256 of N identifiers into an HLL sketch (``sketch.build``) against the exact
  baseline (the same HMACs into a Python set, then ``len``) — time, memory of the result, and the sketch's
  estimate and upper bound against the exact count;
* exchange side: one use's merge (deserialize, union, bounds) of a resource sketch into an exporter's
  counter, against the baseline of a set union of the exact hash sets;
* the pure decision engine: decisions per second over a mix of proposals, against constructing the
  proposals alone.

Ends with one JSON line holding all figures.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import platform
import sys
import time
from typing import Any

from datavalley.crossborder import sketch
from datavalley.crossborder.engine import decide
from datavalley.crossborder.model import Proposal
from datavalley.crossborder.rules import load

SALT = b"b" * 32


def ids(n: int, offset: int = 0) -> list[str]:
    return [f"1{3 + (i % 3) * 2}{(i + offset) % 10}{(i + offset) * 7919 % 100_000_000:08d}" for i in range(n)]


def timed(fn: Any, *a: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - t, out


def exact(values: list[str]) -> set[str]:
    return {
        hmac.new(SALT, f"cn_mobile:{sketch.normalise(v)}".encode(), hashlib.sha256).hexdigest()
        for v in values
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 200_000 if args.quick else 1_000_000
    values = ids(n)
    t_sketch, sk = timed(sketch.build, "cn_mobile", values, SALT)
    t_exact, ex = timed(exact, values)
    est, ub = sketch.bounds(sk)
    truth = len(ex)
    # one use's merge: a second resource overlapping half of the first
    other_values = ids(n // 2, offset=n // 2)
    sk2 = sketch.build("cn_mobile", other_values, SALT)
    ex2 = exact(other_values)
    reps = 20
    t_merge = min(timed(lambda: sketch.bounds(sketch.union(sk, sk2)))[0] for _ in range(reps))
    t_set_union = min(timed(lambda: len(ex | ex2))[0] for _ in range(3))
    merged_est, merged_ub = sketch.bounds(sketch.union(sk, sk2))
    merged_truth = len(ex | ex2)
    # engine
    rules = load()
    mix = [
        Proposal("CN", "DE", personal=True, individuals_ub=i * 9_973 % 2_000_000, sensitive=i % 7 == 0,
                 sensitive_ub=i % 20_000, ciio=i % 11 == 0, important=i % 13 == 0,
                 bases=frozenset({"hr"}) if i % 17 == 0 else frozenset())
        for i in range(20_000)
    ] + [Proposal("DE", c, personal=True) for c in ("CN", "JP", "US")] * 1000  # fmt: skip
    t_engine, _ = timed(lambda: [decide(p, rules) for p in mix])

    def build_only() -> list[Proposal]:
        return [Proposal("CN", "DE", personal=True, individuals_ub=i) for i in range(len(mix))]

    t_build, _ = timed(build_only)
    result = {
        "bench": "crossborder",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.system()} python {sys.version.split()[0]}",
        "identifiers": n,
        "node_sketch_s": round(t_sketch, 3),
        "node_exact_set_s": round(t_exact, 3),
        "sketch_bytes": len(sk),
        "exact_set_bytes_approx": sum(sys.getsizeof(h) for h in ex) + sys.getsizeof(ex),
        "estimate": round(est),
        "upper_bound": ub,
        "exact": truth,
        "upper_bound_over_exact_pct": round(100 * (ub - truth) / truth, 2),
        "merge_ms": round(1000 * t_merge, 3),
        "set_union_ms": round(1000 * t_set_union, 3),
        "merged_upper_bound": merged_ub,
        "merged_exact": merged_truth,
        "merged_estimate": round(merged_est),
        "decisions": len(mix),
        "decisions_per_s": round(len(mix) / t_engine),
        "proposal_construction_per_s": round(len(mix) / t_build),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
