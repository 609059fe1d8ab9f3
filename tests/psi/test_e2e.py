"""Two real node processes (a uvicorn responder and an initiator process) run sessions over loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from datavalley.keys import public_key_b64, write_private_key
from psi.support import free_port

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, object]]:
    keys = {p: Ed25519PrivateKey.generate() for p in ("p_a", "p_b")}
    for p, k in keys.items():
        write_private_key(tmp_path / f"{p}.pem", k)
    shared = list(range(0, 3000, 3))
    (tmp_path / "a.txt").write_text("".join(f"138{i:08d}\n" for i in range(0, 3000, 2)) + "not a phone\n")
    (tmp_path / "b.csv").write_text(
        "phone,amount\n" + "".join(f"+86 138 {i:08d},{i % 700}\n" for i in shared) + "138-0000-0000,5\n"
    )
    grants = [
        {"contract_id": "c_int", "mode": "intersection", "receiver": "p_a", "dataset": "customers"},
        {
            "contract_id": "c_agg",
            "mode": "aggregate",
            "receiver": "p_a",
            "dataset": "customers",
            "columns": {"amount": [0, 500]},
        },
    ]
    common = {"grants": grants, "release": "psi.support:laplace_release", "workers": 1}
    configs = {
        "p_a": {
            **common,
            "participant": "p_a",
            "key_file": str(tmp_path / "p_a.pem"),
            "workdir": str(tmp_path / "work-a"),
            "usage_log": str(tmp_path / "usage-a.jsonl"),
            "peers": {"p_b": public_key_b64(keys["p_b"])},
        },
        "p_b": {
            **common,
            "participant": "p_b",
            "key_file": str(tmp_path / "p_b.pem"),
            "workdir": str(tmp_path / "work-b"),
            "usage_log": str(tmp_path / "usage-b.jsonl"),
            "peers": {"p_a": public_key_b64(keys["p_a"])},
            "datasets": {
                "customers": {
                    "format": "csv",
                    "path": str(tmp_path / "b.csv"),
                    "id_kind": "phone",
                    "id_column": "phone",
                }
            },
        },
    }
    for p, cfg in configs.items():
        (tmp_path / f"{p}.json").write_text(json.dumps(cfg))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "DV_PSI_CONFIG": str(tmp_path / "p_b.json"),
    }
    port = free_port()
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
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, "the responder node exited"
            assert time.monotonic() < deadline, "the responder node did not start"
            time.sleep(0.1)
        yield {"tmp": tmp_path, "env": env, "url": f"http://127.0.0.1:{port}/psi/v1", "shared": shared}
    finally:
        server.terminate()
        server.wait(20)


def _initiate(nodes: dict[str, object], contract: str, mode: str, *extra: str) -> dict[str, object]:
    tmp = nodes["tmp"]
    assert isinstance(tmp, Path)
    out = tmp / f"{contract}.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "datavalley.psi.standalone",
            "initiate",
            "--config",
            str(tmp / "p_a.json"),
            "--url",
            str(nodes["url"]),
            "--responder",
            "p_b",
            "--contract",
            contract,
            "--mode",
            mode,
            "--ids",
            str(tmp / "a.txt"),
            "--id-kind",
            "phone",
            "--out",
            str(out),
            *extra,
        ],
        env=nodes["env"],
        check=True,
        timeout=120,
    )
    result: dict[str, object] = json.loads(out.read_text())
    return result


def test_two_node_processes(nodes: dict[str, object]) -> None:
    """Intersection, then aggregate, between two processes; both usage logs agree and hold no IDs."""
    tmp = nodes["tmp"]
    assert isinstance(tmp, Path)
    shared = nodes["shared"]
    assert isinstance(shared, list)
    expected = {f"+86138{i:08d}" for i in shared if i % 2 == 0}

    result = _initiate(nodes, "c_int", "intersection")
    lines = Path(str(result["intersection_file"])).read_text().splitlines()
    assert {line.split("\t")[1] for line in lines} == expected
    assert result["cardinality"] == len(expected)
    assert result["peer_set_size"] == len(shared)  # "138-0000-0000" is a duplicate of "+86 138 00000000"

    agg = _initiate(nodes, "c_agg", "aggregate", "--column", "amount")
    assert agg["cardinality"] == len(expected)
    released = agg["aggregate"]
    assert isinstance(released, dict) and released["mechanism"] == "discrete_laplace"
    exact = sum(min(i % 700, 500) for i in shared if i % 2 == 0)
    assert abs(released["sums"]["amount"] - exact) < 500 * 40  # scale 500: |noise| < 40 scales

    usage_a = [json.loads(x) for x in (tmp / "usage-a.jsonl").read_text().splitlines()]
    usage_b = [json.loads(x) for x in (tmp / "usage-b.jsonl").read_text().splitlines()]
    assert [u["outcome"] for u in usage_a + usage_b] == ["completed"] * 4
    assert [u["transcript"] for u in usage_a] == [u["transcript"] for u in usage_b]
    assert usage_a[0]["normalisation"] == {
        "records": 1501,
        "invalid": {"unparseable": 1},
        "duplicates": 0,
        "set_size": 1500,
    }
    assert usage_b[0]["normalisation"]["duplicates"] == 1
    assert usage_b[1]["result_size"] == len(expected)
    assert "138000" not in json.dumps(usage_a + usage_b)
