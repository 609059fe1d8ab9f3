"""One party of a SecretFlow PSI run: executed by the *managed* SecretFlow interpreter, not by datavalley.

This file imports only the standard library and ``spu`` (SecretFlow's engine), so it runs in the separate
environment that ``datavalley psi secretflow-setup`` creates (spu 0.9.5 needs numpy < 2 and its own jax).
It is also what a party that runs plain SecretFlow can use as it is (examples/secretflow_party.py).

Input: one JSON object on standard input (docs/PSI.md section 9)::

    {"v": "dv-sf-party/1", "link_id": "...", "rank": 0, "parties": ["host:port", "host:port"],
     "protocol": "RR22" | "KKRT" | "ECDH", "receiver_rank": 0, "input": "/abs/in.csv", "key": "id",
     "output": "/abs/out.csv", "timeout_s": 600,
     "report": "/abs/report.json",
     "tls": {"cert": "/abs/own.pem", "key": "/abs/own.key", "ca": "/abs/peer.pem"} | null}

Output: the file ``report`` (the engine logs to standard output, so the result does not go there):
``{"ok": true, "intersection_count": n | -1, "original_count": n, "seconds": s}`` or
``{"ok": false, "error": "..."}`` (exit status 1). ``intersection_count`` is -1 on the sender, which
learns nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

VERSION = "dv-sf-party/1"
PROTOCOLS = ("RR22", "KKRT", "ECDH")


def _check(cfg: Any) -> dict[str, Any]:
    if not isinstance(cfg, dict) or cfg.get("v") != VERSION:
        raise ValueError(f"the job must be a JSON object with v = {VERSION!r}")
    if cfg.get("protocol") not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}")
    parties = cfg.get("parties")
    if not (isinstance(parties, list) and len(parties) == 2 and all(isinstance(p, str) for p in parties)):
        raise ValueError("parties must be two 'host:port' strings, rank 0 first")
    if cfg.get("rank") not in (0, 1) or cfg.get("receiver_rank") not in (0, 1):
        raise ValueError("rank and receiver_rank must be 0 or 1")
    for name in ("link_id", "input", "key", "output", "report"):
        if not isinstance(cfg.get(name), str) or not cfg[name]:
            raise ValueError(f"{name} must be a non-empty string")
    return cfg


def _write(report: object, result: dict[str, Any]) -> None:
    text = json.dumps(result)
    if isinstance(report, str) and report:
        with open(report + ".part", "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(report + ".part", report)
    else:
        print(text, flush=True)


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    import spu.libspu.link as link  # imported here so --help and config errors need no spu
    import spu.psi as psi

    desc = link.Desc()
    desc.id = cfg["link_id"]
    for i, address in enumerate(cfg["parties"]):
        desc.add_party(f"p{i}", address)
    timeout_ms = int(cfg.get("timeout_s", 600) * 1000)
    desc.recv_timeout_ms = timeout_ms
    desc.http_timeout_ms = timeout_ms
    desc.connect_retry_times = max(1, int(cfg.get("connect_retries", 120)))
    desc.connect_retry_interval_ms = 250
    tls = cfg.get("tls")
    if tls:
        desc.enable_ssl = True
        for opts in (desc.server_ssl_opts, desc.client_ssl_opts):
            opts.cert.certificate_path = tls["cert"]
            opts.cert.private_key_path = tls["key"]
            opts.verify.ca_file_path = tls["ca"]
            opts.verify.verify_depth = 1
    lctx = link.create_brpc(desc, cfg["rank"])
    try:
        protocol = {
            "RR22": psi.PsiProtocol.PROTOCOL_RR22,
            "KKRT": psi.PsiProtocol.PROTOCOL_KKRT,
            "ECDH": psi.PsiProtocol.PROTOCOL_ECDH,
        }[cfg["protocol"]]
        conf = psi.PsiProtocolConfig(
            protocol=protocol, receiver_rank=cfg["receiver_rank"], broadcast_result=False
        )
        if cfg["protocol"] == "ECDH":
            conf.ecdh_params = psi.EcdhParams(curve=psi.EllipticCurveType.CURVE_25519)
        config = psi.PsiExecuteConfig(
            protocol_conf=conf,
            input_params=psi.InputParams(
                type=psi.SourceType.SOURCE_TYPE_FILE_CSV,
                path=cfg["input"],
                selected_keys=[cfg["key"]],
                keys_unique=True,
            ),
            output_params=psi.OutputParams(
                type=psi.SourceType.SOURCE_TYPE_FILE_CSV, path=cfg["output"], disable_alignment=True
            ),
        )
        started = time.monotonic()
        report = psi.psi_execute(config, lctx)
        result = {
            "ok": True,
            "intersection_count": int(report.intersection_count),
            "original_count": int(report.original_count),
            "seconds": time.monotonic() - started,
        }
        # The run is complete: report it before the link is torn down (the engine's TLS teardown can
        # crash the process now and then; what the run produced stands either way).
        _write(cfg["report"], result)
        # Neither party leaves before the other has finished its run: a receiver that leaves early can
        # make the sender's last read fail although the run completed.
        lctx.barrier()
        return result
    except BaseException:
        lctx.stop_link()
        raise


def main() -> int:
    report = None
    try:
        raw = json.loads(sys.stdin.read())
        report = raw.get("report") if isinstance(raw, dict) else None
        run(_check(raw))  # writes its report as soon as the run is complete
        return 0
    except Exception as exc:  # the parent reads the report, whatever happened
        _write(report, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The report is written and both parties passed the barrier: leave without tearing the link down or
    # running the engine's static destructors, which race its network threads and can crash at exit.
    os._exit(code)
