"""Cost of committed ledger entries on the write path (docs/PROTOCOL.md, "Ledger privacy").

Measures, in one run, building an event's ledger entry the way the exchange did before (clear IDs:
``entry_template`` over the IDs, the baseline) and the way it does now (a fresh key, five to seven salted
commitments, then ``entry_template``), plus opening and checking an entry (what a party does). Ends with
ONE JSON line.

    .venv/bin/python bench/ledger_commitments.py --quick
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from datetime import UTC, datetime

from datavalley.canonical import digest
from datavalley.events import Actor, entry_template
from datavalley.ledger.commitment import commit_fields, new_key, opening, reveal


def _id(rng: random.Random, prefix: str) -> str:
    return prefix + "_" + "".join(rng.choice("0123456789abcdefghjkmnpqrstvwxyz") for _ in range(26))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="20k events instead of 200k")
    args = p.parse_args()
    n = 20_000 if args.quick else 200_000
    rng = random.Random(7)
    now = datetime.now(UTC)
    events = [
        (
            _id(rng, "m"),
            _id(rng, "p"),
            [_id(rng, "c"), _id(rng, "p"), _id(rng, "p"), _id(rng, "prd")][: rng.randint(1, 4)],
            digest({"i": i}),
        )
        for i in range(n)
    ]

    t0 = time.perf_counter()
    for actor, part, subjects, payload in events:
        entry_template("contract.offered", Actor(actor, part), subjects, now, payload)
    clear_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    built = []
    for actor, part, subjects, payload in events:
        key = new_key()
        a, pa, su, pl = commit_fields(key, actor, part, subjects, payload)
        built.append((key, entry_template("contract.offered", Actor(a, pa), su, now, pl)))
    committed_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for (key, entry), (actor, part, subjects, payload) in zip(built, events, strict=True):
        reveal(
            entry.replace('"index":null', '"index":0', 1).encode(),
            opening(key, actor, part, subjects, payload),
        )
    reveal_s = time.perf_counter() - t0

    print(
        json.dumps(
            {
                "bench": "ledger_commitments",
                "quick": args.quick,
                "events": n,
                "machine": {"platform": platform.platform(), "python": platform.python_version()},
                "clear_entries_per_s": round(n / clear_s),
                "committed_entries_per_s": round(n / committed_s),
                "overhead_us_per_event": round((committed_s - clear_s) / n * 1e6, 2),
                "openings_checked_per_s": round(n / reveal_s),
            }
        )
    )


if __name__ == "__main__":
    main()
