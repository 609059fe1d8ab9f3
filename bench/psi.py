"""PSI benchmark: datavalley between two node processes vs the curve-operation limit vs openmined-psi.

On the same generated sets of Chinese resident ID numbers (n per side, half of them shared) it measures

(a) datavalley end to end: a responder node (uvicorn, ``datavalley.psi.standalone``) and an initiator
    process on loopback, each with one worker per core, from process start to the written result;
(b) the limit: the suite's single-core hash-to-group and scalar-multiplication times measured in this
    run × the operations the protocol needs (per element of either set: one hash, two multiplications)
    ÷ cores;
(c) openmined-psi 2.0 on the same sets (one process, as its Python API runs: client and server in turn);
(d) SecretFlow's engine (``spu``, in its managed environment, docs/PSI.md section 9) per protocol, twice:
    standalone (two engine processes on CSV files, as a SecretFlow user runs it) and governed by
    datavalley (the same two nodes as (a), the same sets, sessions run by the engine); the ratio is
    datavalley's governance overhead (normalisation, signed control messages, TLS, files, metering).

It prints datavalley/limit and openmined/datavalley, bytes per element, and ends with ONE JSON line.

    python bench/psi.py                 # 1,000,000 × 1,000,000
    python bench/psi.py --quick         # 100,000 × 100,000, under a minute
    python bench/psi.py --scale 10M     # 10M × 10M: wall time and peak RSS (openmined skipped)
    python bench/psi.py --scale 10M --secretflow RR22 --secretflow-only   # 10M × 10M on RR22 only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from datavalley.keys import public_key_b64, write_private_key
from datavalley.psi.suites import Suite, hash_to_group, multiply, new_secret
from datavalley.psi.workers import Workers, task_blind

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_REGIONS = ("110101", "310104", "440305", "510107", "330106", "420102", "320106", "370202", "610113")
_DAYS = 20000


def _ric(i: int, epoch: int) -> str:
    region = _REGIONS[i % 9]
    t = time.gmtime(epoch + ((i // 9) % _DAYS) * 86400)
    body = f"{region}{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}{(i // (9 * _DAYS)) % 1000:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _WEIGHTS, strict=True)) % 11]


def generate(path: Path, start: int, count: int) -> None:
    """``count`` distinct valid ID numbers (indices ``start..start+count``), one per line."""
    epoch = int(time.mktime((1950, 1, 1, 12, 0, 0, 0, 0, 0)))
    with path.open("w") as fh:
        for base in range(start, start + count, 100_000):
            fh.write("".join(_ric(i, epoch) + "\n" for i in range(base, min(base + 100_000, start + count))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_hwm_kib(pid: int) -> int:
    """Sum of the peak RSS (VmHWM) of ``pid`` and its descendants, in KiB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total


def run_datavalley(
    tmp: Path, ids_a: Path, ids_b: Path, suite: Suite, mode: str, workers: int, engine: str | None = None
) -> dict[str, float]:
    keys = {p: Ed25519PrivateKey.generate() for p in ("p_a", "p_b")}
    for p, k in keys.items():
        write_private_key(tmp / f"{p}.pem", k, overwrite=True)
    grant = {"contract_id": "c_bench", "mode": mode, "receiver": "p_a", "dataset": "ids"}
    common: dict[str, object] = {
        "grants": [grant],
        "release": "datavalley.psi.standalone:no_release",
        "workers": workers,
    }
    if engine:
        common["engines"] = {"c_bench": engine}
    cfg = {
        "p_a": {
            **common,
            "participant": "p_a",
            "key_file": str(tmp / "p_a.pem"),
            "workdir": str(tmp / "work-a"),
            "peers": {"p_b": public_key_b64(keys["p_b"])},
            "usage_log": str(tmp / "usage-a.jsonl"),
        },
        "p_b": {
            **common,
            "participant": "p_b",
            "key_file": str(tmp / "p_b.pem"),
            "workdir": str(tmp / "work-b"),
            "peers": {"p_a": public_key_b64(keys["p_a"])},
            "usage_log": str(tmp / "usage-b.jsonl"),
            "datasets": {"ids": {"format": "lines", "path": str(ids_b), "id_kind": "cn_ric"}},
        },
    }
    for p, c in cfg.items():
        (tmp / f"{p}.json").write_text(json.dumps(c))
    port = _free_port()
    env = {**os.environ, "DV_PSI_CONFIG": str(tmp / "p_b.json")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "datavalley.psi.standalone:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        out = tmp / "result.json"
        cmd = [
            sys.executable,
            "-m",
            "datavalley.psi.standalone",
            "initiate",
            "--config",
            str(tmp / "p_a.json"),
            "--url",
            f"http://127.0.0.1:{port}/psi/v1",
            "--responder",
            "p_b",
            "--contract",
            "c_bench",
            "--mode",
            mode,
            "--suite",
            suite.value,
            "--ids",
            str(ids_a),
            "--id-kind",
            "cn_ric",
            "--out",
            str(out),
        ]
        if engine:
            cmd += ["--engine", engine]
        out.unlink(missing_ok=True)
        started = time.perf_counter()
        initiator = subprocess.Popen(cmd)
        peak = {"responder": 0, "initiator": 0}
        with ThreadPoolExecutor(1) as ex:

            def watch() -> None:  # each side's process tree's peak RSS, sampled while the session runs
                while initiator.poll() is None:
                    peak["responder"] = max(peak["responder"], _tree_hwm_kib(server.pid))
                    peak["initiator"] = max(peak["initiator"], _tree_hwm_kib(initiator.pid))
                    time.sleep(0.25)

            watcher = ex.submit(watch)
            if initiator.wait() != 0:
                raise SystemExit(f"the initiator failed with status {initiator.returncode}")
            wall = time.perf_counter() - started
            watcher.result()
        result = json.loads(out.read_text())
    finally:
        server.terminate()
        server.wait(30)
    usage = result["usage"]
    return {
        "seconds": wall,
        "cardinality": result["cardinality"],
        "initiator_bytes_sent": usage["bytes_sent"],
        "initiator_bytes_received": usage["bytes_received"],
        "responder_peak_rss_mib": peak["responder"] / 1024,
        "initiator_peak_rss_mib": peak["initiator"] / 1024,
    }


def run_secretflow_standalone(tmp: Path, ids_a: Path, ids_b: Path, protocol: str) -> dict[str, float]:
    """SecretFlow's engine alone: two engine processes on CSV files of the raw IDs (no datavalley)."""
    from datavalley.psi.secretflow.runtime import PartyJob, start_party
    from datavalley.psi.secretflow.session import _free_port

    inputs = []
    for name, ids in (("a", ids_a), ("b", ids_b)):
        path = tmp / f"sf-{name}.csv"
        with ids.open() as src, path.open("w") as dst:
            dst.write("id\n")
            shutil.copyfileobj(src, dst)
        inputs.append(path)
    parties = (f"127.0.0.1:{_free_port('127.0.0.1')}", f"127.0.0.1:{_free_port('127.0.0.1')}")
    jobs = [
        PartyJob(
            link_id=f"bench{protocol}",
            rank=rank,
            parties=parties,
            protocol=protocol,
            input=inputs[rank],
            key="id",
            output=tmp / f"sf-out-{rank}.csv",
            workdir=tmp / f"sf-work-{rank}",
            timeout_s=3600,
        )
        for rank in (0, 1)
    ]
    started = time.perf_counter()
    running = [start_party(job) for job in jobs]
    reports = [party.wait() for party in running]
    wall = time.perf_counter() - started
    return {"seconds": wall, "cardinality": float(reports[0].intersection_count or 0)}


def op_times(suite: Suite, ids_path: Path, n: int = 20000) -> tuple[float, float]:
    """Single-core seconds per hash-to-group and per scalar multiplication, measured now."""
    with ids_path.open() as fh:
        values = [next(fh).strip().encode() for _ in range(n)]
    t = time.perf_counter()
    points = hash_to_group(suite, values)
    t_hash = (time.perf_counter() - t) / n
    secret = new_secret(suite)
    t = time.perf_counter()
    multiply(suite, secret, points, validate=False)
    t_mult = (time.perf_counter() - t) / n
    return t_hash, t_mult


def pool_scaling(suite: Suite, threads: bool, n: int = 8000) -> float:
    """Throughput of a 2-worker pool over one worker (processes, or threads: cffi releases the GIL)."""
    points = hash_to_group(suite, [str(i).encode() for i in range(n)])
    secret = new_secret(suite)
    half = len(points) // 2 // 32 * 32
    pool = Workers(2, threads=threads)
    try:
        pool.start()
        t = time.perf_counter()
        pool.run(task_blind, suite, secret, points)
        one = time.perf_counter() - t
        t = time.perf_counter()
        futures = [
            pool.submit(task_blind, suite, secret, points[:half]),
            pool.submit(task_blind, suite, secret, points[half:]),
        ]
        for f in futures:
            f.result()
        two = time.perf_counter() - t
    finally:
        pool.close()
    return one / two


def run_openmined(ids_a: Path, ids_b: Path) -> tuple[float, int]:
    import private_set_intersection.python as psi

    a = ids_a.read_text().split()
    b = ids_b.read_text().split()
    started = time.perf_counter()
    client = psi.client.CreateWithNewKey(True)
    server = psi.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(1e-9, len(a), b, psi.DataStructure.RAW)
    request = client.CreateRequest(a)
    response = server.ProcessRequest(request)
    found = client.GetIntersection(setup, response)
    return time.perf_counter() - started, len(found)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 per side")
    parser.add_argument("--scale", choices=["10M"], help="10,000,000 per side; openmined-psi skipped")
    parser.add_argument("-n", type=int, help="elements per side (overrides --quick)")
    parser.add_argument("--suite", choices=[s.value for s in Suite], default=Suite.X25519.value)
    parser.add_argument("--mode", choices=["cardinality", "intersection"], default="intersection")
    parser.add_argument("--skip-openmined", action="store_true")
    parser.add_argument(
        "--secretflow",
        default=None,
        help="SecretFlow protocols to run, comma-separated (default RR22,ECDH when the engine is installed)",
    )
    parser.add_argument("--secretflow-only", action="store_true", help="skip our libsodium backend")
    args = parser.parse_args()
    if args.secretflow is None:
        from datavalley.errors import Unavailable
        from datavalley.psi.secretflow import locate

        try:
            locate()
            args.secretflow = "RR22,ECDH"
        except Unavailable:
            print("SecretFlow's engine is not installed (datavalley psi secretflow-setup): skipping it")
            args.secretflow = ""
    protocols = [p for p in args.secretflow.split(",") if p]
    n = args.n or (10_000_000 if args.scale else 100_000 if args.quick else 1_000_000)
    suite = Suite(args.suite)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="dv-psi-bench-") as d:
        tmp = Path(d)
        ids_a, ids_b = tmp / "a.txt", tmp / "b.txt"
        t = time.perf_counter()
        generate(ids_a, 0, n)
        generate(ids_b, n // 2, n)
        print(f"generated 2 × {n:,} ID numbers ({n - n // 2:,} shared) in {time.perf_counter() - t:.1f} s")

        t_hash, t_mult = op_times(suite, ids_a)
        other = Suite.RISTRETTO255 if suite is Suite.X25519 else Suite.X25519
        o_hash, o_mult = op_times(other, ids_a, 5000)
        limit = 2 * n * (t_hash + 2 * t_mult) / cores
        other_limit = 2 * n * (o_hash + 2 * o_mult) / cores
        print(
            f"{suite}: hash {t_hash * 1e6:.1f} µs, multiplication {t_mult * 1e6:.1f} µs per op (one core); "
            f"limit for 2 × {n:,} on {cores} cores: {limit:.1f} s ({other}: {other_limit:.1f} s)"
        )
        scaling_p = pool_scaling(suite, threads=False)
        scaling_t = pool_scaling(suite, threads=True)
        print(f"2-worker speed-up: processes {scaling_p:.2f}×, threads {scaling_t:.2f}×")
        load = os.getloadavg()[0]
        effective = max(1.0, min(float(cores), scaling_p))
        limit_effective = limit * cores / effective
        if effective < cores - 0.3:
            print(
                f"note: only {effective:.2f} of {cores} cores were free for this run (load average "
                f"{load:.1f}: other processes); the limit on the free cores is {limit_effective:.1f} s"
            )

        expected = n - n // 2
        sf: dict[str, dict[str, float]] = {}
        for protocol in protocols:
            alone = run_secretflow_standalone(tmp, ids_a, ids_b, protocol)
            governed = run_datavalley(tmp, ids_a, ids_b, suite, "intersection", cores, engine=protocol)
            assert alone["cardinality"] == governed["cardinality"] == expected, (alone, governed, expected)
            sf[protocol] = {
                "standalone_s": round(alone["seconds"], 2),
                "datavalley_s": round(governed["seconds"], 2),
                "overhead": round(governed["seconds"] / alone["seconds"], 3),
                "initiator_peak_rss_mib": round(governed["initiator_peak_rss_mib"]),
                "responder_peak_rss_mib": round(governed["responder_peak_rss_mib"]),
            }
            print(
                f"SecretFlow {protocol}: standalone {alone['seconds']:.1f} s, governed by datavalley "
                f"{governed['seconds']:.1f} s (overhead {governed['seconds'] / alone['seconds']:.2f}×), "
                f"peak RSS initiator {governed['initiator_peak_rss_mib']:.0f} MiB, responder tree "
                f"{governed['responder_peak_rss_mib']:.0f} MiB"
            )
        if args.secretflow_only:
            print(
                json.dumps(
                    {"bench": "psi", "date": time.strftime("%Y-%m-%d"), "n_per_side": n, "secretflow": sf}
                )
            )
            return 0
        dv = run_datavalley(tmp, ids_a, ids_b, suite, args.mode, cores)
        assert dv["cardinality"] == expected, (dv["cardinality"], expected)
        print(
            f"datavalley ({args.mode}, {suite}): {dv['seconds']:.1f} s end to end, "
            f"{dv['cardinality']:,} matches, "
            f"datavalley/limit = {dv['seconds'] / limit:.2f}"
        )
        up = dv["initiator_bytes_sent"] / n
        down = dv["initiator_bytes_received"] / n
        print(f"bytes per element: initiator→responder {up:.1f}, responder→initiator {down:.1f}")
        print(
            f"peak RSS: initiator {dv['initiator_peak_rss_mib']:.0f} MiB, "
            f"responder tree {dv['responder_peak_rss_mib']:.0f} MiB"
        )
        om_seconds: float | None = None
        if not (args.skip_openmined or args.scale):
            om_seconds, om_found = run_openmined(ids_a, ids_b)
            assert om_found == expected, (om_found, expected)
            print(
                f"openmined-psi: {om_seconds:.1f} s, openmined/datavalley = {om_seconds / dv['seconds']:.2f}"
            )
    figures = {
        "bench": "psi",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {cores} cores {platform.processor() or platform.platform()}",
        "n_per_side": n,
        "suite": suite.value,
        "mode": args.mode,
        "hash_us": round(t_hash * 1e6, 2),
        "mult_us": round(t_mult * 1e6, 2),
        "limit_s": round(limit, 2),
        f"limit_{other.value}_s": round(other_limit, 2),
        "datavalley_s": round(dv["seconds"], 2),
        "openmined_s": round(om_seconds, 2) if om_seconds is not None else None,
        "datavalley_over_limit": round(dv["seconds"] / limit, 3),
        "effective_cores": round(effective, 2),
        "limit_on_free_cores_s": round(limit_effective, 2),
        "datavalley_over_limit_on_free_cores": round(dv["seconds"] / limit_effective, 3),
        "load_average_at_start": round(load, 2),
        "openmined_over_datavalley": round(om_seconds / dv["seconds"], 3) if om_seconds is not None else None,
        "bytes_per_element_up": round(up, 2),
        "bytes_per_element_down": round(down, 2),
        "pool_speedup_processes": round(scaling_p, 2),
        "pool_speedup_threads": round(scaling_t, 2),
        "initiator_peak_rss_mib": round(dv["initiator_peak_rss_mib"]),
        "responder_peak_rss_mib": round(dv["responder_peak_rss_mib"]),
        "secretflow": sf,
        "secretflow_over_datavalley": {p: round(dv["seconds"] / f["datavalley_s"], 2) for p, f in sf.items()},
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
