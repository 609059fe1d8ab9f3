"""Ledger benchmark: durable appends, the raw hashing limit, and proofs at scale.

Usage::

    .venv/bin/python bench/ledger.py            # 1M events, SQLite and PostgreSQL
    .venv/bin/python bench/ledger.py --quick    # 100k events, well under a minute

For each backend the program makes a fresh exchange home, bulk-loads N events into the outbox (not
timed), then times the durable append path, ``Ledger.sequence_pending()`` with ``sequence_batch=B`` (one
committed transaction per batch; SQLite in WAL with ``synchronous=FULL``, PostgreSQL with ``fsync=on`` and
``synchronous_commit=on``). It also times the pure log path (``log.append_entries`` of the same entries
into a second fresh log, one transaction per batch), the raw limit (hashlib leaf hashing of the same
entry bytes), and inclusion/consistency proofs read from stored nodes at the final tree size.

Every run ends with one JSON line holding all figures and ratios.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable
from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from datavalley.canonical import digest
from datavalley.events import Actor, EventRow, entry_template
from datavalley.exchange import Exchange
from datavalley.home import init_home, settings_for
from datavalley.ledger import log, merkle
from datavalley.ledger.commitment import commit_fields, new_key
from datavalley.ledger.tables import LedgerEntryRow

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
BACKENDS = ("sqlite", "postgresql")
# The throwaway test server runs with fsync off; the benchmark wants durable commits.
PG_DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
SQLITE_TARGET_PER_S = 50_000
PROOF_TARGET_MS = 0.5
LOAD_CHUNK = 20_000
EVENT_TYPES = (
    "participant.registered",
    "member.added",
    "token.issued",
    "dataset.registered",
    "offer.published",
    "contract.signed",
    "access.granted",
    "query.executed",
)
_EVENTS = cast(Table, EventRow.__table__)

console = Console(stderr=True)  # progress bars
out_console = Console()  # results: the table, then the JSON line last


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    return {
        "p50": round(percentile(ordered, 50) * 1e3, 4),
        "p99": round(percentile(ordered, 99) * 1e3, 4),
        "mean": round(statistics.fmean(ordered) * 1e3, 4),
    }


def fake_id(rng: random.Random, prefix: str) -> str:
    """An ID shaped like ``datavalley.store.base.new_id`` (prefix + 26 Crockford base32 characters)."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return prefix + "_" + "".join(rng.choice(alphabet) for _ in range(26))


def event_rows(n: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    """N realistic outbox rows in chunks: IDs of a pool of members, participants and objects."""
    rng = random.Random(seed)
    participants = [fake_id(rng, "p") for _ in range(500)]
    members = [(fake_id(rng, "m"), rng.choice(participants)) for _ in range(2000)]
    objects = [fake_id(rng, rng.choice("dkot")) for _ in range(5000)]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    chunk: list[dict[str, Any]] = []
    for i in range(n):
        type_ = rng.choice(EVENT_TYPES)
        if rng.random() < 0.05:
            actor, participant = None, None
        else:
            actor, participant = rng.choice(members)
        subjects = [participant or rng.choice(participants), *rng.sample(objects, rng.randint(0, 2))]
        payload = {"type": type_, "subjects": subjects, "seq": i, "state": rng.choice(("new", "active"))}
        at = start + timedelta(milliseconds=37 * i + rng.randint(0, 36))
        payload_digest = digest(payload)
        key = new_key()
        c_actor, c_part, c_subjects, c_payload = commit_fields(
            key, actor, participant, subjects, payload_digest
        )
        chunk.append(
            {
                "type": type_,
                "actor": actor,
                "actor_participant": participant,
                "subjects": subjects,
                "occurred_at": at,
                "payload_digest": payload_digest,
                "payload": payload,
                "entry": entry_template(type_, Actor(c_actor, c_part), c_subjects, at, c_payload),
                "commit_key": key.hex(),
            }
        )
        if len(chunk) == LOAD_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextmanager
def postgres_server(base: Path) -> Iterator[Any]:
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    from pgserver import PostgresServer  # type: ignore[import-not-found, unused-ignore]

    with PostgresServer(base, settings=PG_DURABLE_SETTINGS) as pg:
        yield pg


# ---------------------------------------------------------------------------------------------------------
# phases
# ---------------------------------------------------------------------------------------------------------


@dataclass
class BackendResult:
    backend: str
    events: int
    load_s: float = 0.0
    sequence_s: float = 0.0
    sequenced: int = 0
    direct_s: float = 0.0
    direct_appended: int = 0
    final_size: int = 0
    proof_gen: dict[str, float] = field(default_factory=dict)
    proof_request: dict[str, float] = field(default_factory=dict)
    proof_verify: dict[str, float] = field(default_factory=dict)
    consistency_gen: dict[str, float] = field(default_factory=dict)
    consistency_verify: dict[str, float] = field(default_factory=dict)
    proof_len: float = 0.0
    proof_samples: int = 0
    consistency_samples: int = 0

    @property
    def appends_per_s(self) -> float:
        return self.sequenced / self.sequence_s if self.sequence_s else 0.0

    @property
    def direct_per_s(self) -> float:
        return self.direct_appended / self.direct_s if self.direct_s else 0.0


def open_fresh_exchange(home: Path, database_url: str | None, batch: int) -> Exchange:
    init_home(home, database_url=database_url)
    return Exchange.open(settings_for(home, sequence_batch=batch))


def load_outbox(ex: Exchange, n: int, seed: int, label: str) -> float:
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"{label}: load outbox (untimed)", total=n)
        for chunk in event_rows(n, seed):
            with ex.session(write=True) as s, s.begin():
                s.execute(insert(_EVENTS), chunk)
            bar.advance(task, len(chunk))
    return time.perf_counter() - t0


def time_sequencing(ex: Exchange, n: int, label: str) -> tuple[int, float]:
    """Time ``Ledger.sequence_pending()``; a thin wrapper around ``log.sequence_batch`` drives the bar."""
    original = log.sequence_batch
    with progress() as bar:
        task = bar.add_task(f"{label}: sequence_pending (timed)", total=n)

        def tracked(session: Session, limit: int) -> int:
            count = original(session, limit)
            bar.advance(task, count)
            return count

        log.sequence_batch = tracked
        try:
            gc.collect()
            t0 = time.perf_counter()
            count = ex.ledger.sequence_pending()
            elapsed = time.perf_counter() - t0
        finally:
            log.sequence_batch = original
    return count, elapsed


def read_entries(ex: Exchange, start: int, end: int) -> list[bytes]:
    with ex.session(write=False) as s, s.begin():
        return log.entries(s, start, end)


def time_direct_append(ex: Exchange, entries: Sequence[bytes], batch: int, label: str) -> float:
    """The pure log path: lock the head and ``log.append_entries`` one committed batch at a time."""
    with progress() as bar:
        task = bar.add_task(f"{label}: log.append_entries (timed)", total=len(entries))
        gc.collect()
        t0 = time.perf_counter()
        for lo in range(0, len(entries), batch):
            part = entries[lo : lo + batch]
            with ex.session(write=True) as s, s.begin():
                log.append_entries(s, log.lock_head(s), part)
            bar.advance(task, len(part))
        return time.perf_counter() - t0


def time_raw_hashing(entries: Sequence[bytes], repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds for hashlib SHA-256 leaf hashes (0x00 prefix) of every entry."""
    sha = hashlib.sha256
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for e in entries:
            sha(b"\x00" + e).digest()
        best = min(best, time.perf_counter() - t0)
    return best


def time_proofs(ex: Exchange, k: int, budget_s: float, seed: int, result: BackendResult, label: str) -> None:
    """Time K random inclusion and consistency proofs at the current size (each kind capped at budget_s)."""
    rng = random.Random(seed)
    perf = time.perf_counter
    with ex.session(write=False) as s, s.begin():
        head = log.head(s)
        size = head.size
        indices = [rng.randrange(size) for _ in range(k)]
        rows = s.execute(
            select(LedgerEntryRow.idx, LedgerEntryRow.entry).where(
                LedgerEntryRow.idx.in_(sorted(set(indices)))
            )
        )
        entry_at: dict[int, bytes] = {idx: e for idx, e in rows}
        # Older sizes for consistency proofs must be heads a verifier knows: compute their roots untimed.
        pairs = sorted({(rng.randrange(1, size), size) for _ in range(k)})
        rng.shuffle(pairs)
        old_roots = {old: log.root_at(s, old) for old, _ in pairs}
        gen: list[float] = []
        verify: list[float] = []
        lengths = 0
        with progress() as bar:
            task = bar.add_task(f"{label}: inclusion proofs", total=k)
            deadline = perf() + budget_s
            for i in indices:
                if perf() > deadline:
                    break
                t0 = perf()
                proof = log.inclusion_proof(s, i, size)
                t1 = perf()
                ok = merkle.verify_inclusion(entry_at[i], i, size, proof, head.root_hash)
                t2 = perf()
                if not ok:
                    raise SystemExit(f"inclusion proof for {i} in {size} does not verify")
                gen.append(t1 - t0)
                verify.append(t2 - t1)
                lengths += len(proof)
                bar.advance(task)
            cgen: list[float] = []
            cver: list[float] = []
            task = bar.add_task(f"{label}: consistency proofs", total=len(pairs))
            deadline = perf() + budget_s
            for old, new in pairs:
                if perf() > deadline:
                    break
                t0 = perf()
                proof = log.consistency_proof(s, old, new)
                t1 = perf()
                ok = merkle.verify_consistency(old, new, old_roots[old], head.root_hash, proof)
                t2 = perf()
                if not ok:
                    raise SystemExit(f"consistency proof {old} -> {new} does not verify")
                cgen.append(t1 - t0)
                cver.append(t2 - t1)
                bar.advance(task)
    # What one API request pays: a fresh read session and transaction per proof (pooled connection).
    request: list[float] = []
    for i in indices[: min(len(gen), 200)]:
        t0 = perf()
        with ex.session(write=False) as s, s.begin():
            log.inclusion_proof(s, i, size)
        request.append(perf() - t0)
    result.final_size = size
    result.proof_gen = summary_ms(gen)
    result.proof_verify = summary_ms(verify)
    result.proof_request = summary_ms(request)
    result.consistency_gen = summary_ms(cgen)
    result.consistency_verify = summary_ms(cver)
    result.proof_len = lengths / len(gen)
    result.proof_samples = len(gen)
    result.consistency_samples = len(cgen)


def verify_leaf_hashes(ex: Exchange, entries: Sequence[bytes], start: int) -> None:
    """Spot-check that the stored leaf hashes are RFC 9162 leaf hashes of the entries we timed."""
    rng = random.Random(7)
    picks = sorted(rng.sample(range(len(entries)), min(200, len(entries))))
    with ex.session(write=False) as s, s.begin():
        rows = s.execute(
            select(LedgerEntryRow.idx, LedgerEntryRow.leaf_hash).where(
                LedgerEntryRow.idx.in_([start + p for p in picks])
            )
        )
        stored: dict[int, bytes] = {idx: h for idx, h in rows}
    for p in picks:
        if stored[start + p] != merkle.leaf_hash(entries[p]):
            raise SystemExit(f"stored leaf hash {start + p} is not SHA-256(0x00 || entry)")


def run_backend(
    backend: str, args: argparse.Namespace, workdir: Path, pg: Any, raw: dict[str, float]
) -> BackendResult:
    label = "SQLite" if backend == "sqlite" else "PostgreSQL"
    result = BackendResult(backend, args.events)
    url = pg.create_database("bench") if backend == "postgresql" else None
    ex = open_fresh_exchange(workdir / f"{backend}-home", url, args.batch)
    try:
        with ex.session(write=False) as s, s.begin():
            start = log.head(s).size
            pending = s.execute(select(func.count()).where(EventRow.ledger_index.is_(None))).scalar_one()
        if pending:
            ex.ledger.sequence_pending()  # init's own events, if any are left
            start = read_head_size(ex)
        result.load_s = load_outbox(ex, args.events, args.seed, label)
        result.sequenced, result.sequence_s = time_sequencing(ex, args.events, label)
        if result.sequenced != args.events:
            raise SystemExit(f"{label}: sequenced {result.sequenced} events, expected {args.events}")
        entries = read_entries(ex, start, start + args.events)
        verify_leaf_hashes(ex, entries, start)
        if "per_s" not in raw:
            raw["per_s"] = len(entries) / time_raw_hashing(entries)
            raw["mean_entry_bytes"] = statistics.fmean(len(e) for e in entries)
        time_proofs(ex, args.proofs, args.proof_seconds, args.seed + 1, result, label)
        if not args.no_direct:
            durl = pg.create_database("bench_direct") if backend == "postgresql" else None
            direct = open_fresh_exchange(workdir / f"{backend}-direct-home", durl, args.batch)
            try:
                result.direct_s = time_direct_append(direct, entries, args.batch, label)
                result.direct_appended = len(entries)
            finally:
                direct.close()
        del entries
    finally:
        ex.close()
    return result


def read_head_size(ex: Exchange) -> int:
    with ex.session(write=False) as s, s.begin():
        return log.head(s).size


# ---------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
    }


def render_table(results: list[BackendResult], raw: dict[str, float], args: argparse.Namespace) -> None:
    table = RichTable(title=f"datavalley ledger benchmark: {args.events:,} events, batches of {args.batch:,}")
    table.add_column("figure")
    for r in results:
        table.add_column(r.backend, justify="right")

    def row(name: str, fn: Callable[[BackendResult], str]) -> None:
        table.add_row(name, *(fn(r) for r in results))

    row("outbox load (untimed), s", lambda r: f"{r.load_s:.1f}")
    row("sequence_pending, s", lambda r: f"{r.sequence_s:.2f}")
    row("durable appends/s (outbox → log)", lambda r: f"{r.appends_per_s:,.0f}")
    row("log.append_entries only, appends/s", lambda r: f"{r.direct_per_s:,.0f}" if r.direct_s else "-")
    row("raw leaf hashes/s ÷ appends/s", lambda r: f"{raw['per_s'] / r.appends_per_s:,.1f}×")
    row("tree size for proofs", lambda r: f"{r.final_size:,}")
    row("inclusion proof gen p50 / p99, ms", lambda r: f"{r.proof_gen['p50']:.3f} / {r.proof_gen['p99']:.3f}")
    row(
        "  … per request (new session) p50 / p99",
        lambda r: f"{r.proof_request['p50']:.3f} / {r.proof_request['p99']:.3f}",
    )
    row(
        "inclusion verify p50 / p99, ms",
        lambda r: f"{r.proof_verify['p50']:.4f} / {r.proof_verify['p99']:.4f}",
    )
    row(
        "consistency proof gen p50 / p99, ms",
        lambda r: f"{r.consistency_gen['p50']:.3f} / {r.consistency_gen['p99']:.3f}",
    )
    row(
        "consistency verify p50 / p99, ms",
        lambda r: f"{r.consistency_verify['p50']:.4f} / {r.consistency_verify['p99']:.4f}",
    )
    row("proof samples (inclusion / consistency)", lambda r: f"{r.proof_samples} / {r.consistency_samples}")
    row("mean inclusion proof length", lambda r: f"{r.proof_len:.1f}")
    out_console.print(table)
    out_console.print(
        f"raw limit: hashlib SHA-256(0x00 || entry) = {raw['per_s']:,.0f} hashes/s "
        f"(mean entry {raw['mean_entry_bytes']:.0f} bytes)"
    )


def figures(results: list[BackendResult], raw: dict[str, float], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "ledger",
        "quick": args.quick,
        "events": args.events,
        "batch": args.batch,
        "proof_samples": args.proofs,
        "machine": machine(),
        "sqlite_settings": {"journal_mode": "wal", "synchronous": "full"},
        "postgresql_settings": PG_DURABLE_SETTINGS
        if any(r.backend == "postgresql" for r in results)
        else None,
        "raw_leaf_hash_per_s": round(raw["per_s"]),
        "mean_entry_bytes": round(raw["mean_entry_bytes"], 1),
    }
    for r in results:
        b = r.backend
        out[f"{b}_appends_per_s"] = round(r.appends_per_s)
        out[f"{b}_sequence_s"] = round(r.sequence_s, 3)
        if r.direct_s:
            out[f"{b}_direct_appends_per_s"] = round(r.direct_per_s)
        out[f"ratio_raw_over_{b}"] = round(raw["per_s"] / r.appends_per_s, 2)
        out[f"{b}_tree_size"] = r.final_size
        out[f"{b}_proof_samples"] = r.proof_samples
        out[f"{b}_consistency_samples"] = r.consistency_samples
    # Unprefixed proof figures are the first backend's (SQLite by default), as the spec names them.
    first = results[0]
    for name, stats in (
        ("proof_gen", first.proof_gen),
        ("proof_verify", first.proof_verify),
        ("proof_request", first.proof_request),
        ("consistency_gen", first.consistency_gen),
        ("consistency_verify", first.consistency_verify),
    ):
        out[f"{name}_p50_ms"] = stats["p50"]
        out[f"{name}_p99_ms"] = stats["p99"]
    out["proof_backend"] = first.backend
    for r in results[1:]:
        for name, stats in (
            ("proof_gen", r.proof_gen),
            ("proof_verify", r.proof_verify),
            ("proof_request", r.proof_request),
            ("consistency_gen", r.consistency_gen),
        ):
            out[f"{r.backend}_{name}_p50_ms"] = stats["p50"]
            out[f"{r.backend}_{name}_p99_ms"] = stats["p99"]
    sqlite = next((r for r in results if r.backend == "sqlite"), None)
    out["target_sqlite_appends_per_s"] = SQLITE_TARGET_PER_S
    out["target_proof_ms"] = PROOF_TARGET_MS
    out["meets_sqlite_append_target"] = (
        sqlite.appends_per_s >= SQLITE_TARGET_PER_S if sqlite is not None else None
    )
    out["meets_proof_target"] = all(
        r.proof_gen["p50"] <= PROOF_TARGET_MS and r.proof_verify["p50"] <= PROOF_TARGET_MS for r in results
    )
    return out


# ---------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="scaled down: 100k events, 500 proof samples")
    p.add_argument("--events", type=int, default=None, help="events to append (default 1,000,000)")
    p.add_argument("--batch", type=int, default=10_000, help="events per committed transaction")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: sqlite,postgresql")
    p.add_argument("--proofs", type=int, default=None, help="proof samples per backend (default 2000)")
    p.add_argument(
        "--proof-seconds",
        type=float,
        default=None,
        help="time cap per proof kind and backend (default 60; --quick: 5)",
    )
    p.add_argument("--seed", type=int, default=20250101)
    p.add_argument("--no-direct", action="store_true", help="skip the log.append_entries-only figure")
    p.add_argument("--workdir", type=Path, default=None, help="where temporary homes go (default: tmp)")
    args = p.parse_args(argv)
    if args.events is None:
        args.events = 100_000 if args.quick else 1_000_000
    if args.proof_seconds is None:
        args.proof_seconds = 5.0 if args.quick else 60.0
    if args.proofs is None:
        args.proofs = 500 if args.quick else 2000
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown or not args.backends:
        p.error(f"--backends takes a comma-separated subset of {','.join(BACKENDS)}")
    if args.events < 1 or args.batch < 1 or args.proofs < 1:
        p.error("--events, --batch and --proofs must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wall = time.perf_counter()
    raw: dict[str, float] = {}
    results: list[BackendResult] = []
    with tempfile.TemporaryDirectory(prefix="datavalley-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        with ExitStack() as stack:
            pg = stack.enter_context(postgres_server(workdir)) if "postgresql" in args.backends else None
            for backend in args.backends:
                results.append(run_backend(backend, args, workdir, pg, raw))
    render_table(results, raw, args)
    out = figures(results, raw, args)
    out["wall_s"] = round(time.perf_counter() - wall, 1)
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
