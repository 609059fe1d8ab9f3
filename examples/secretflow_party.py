"""A party that runs plain SecretFlow (only ``spu`` and the standard library), doing PSI with a
datavalley node under an exchange contract. See docs/PSI.md section 9 ("Interop").

    pip install spu==0.9.5          # Python 3.9-3.11; Debian also needs libgomp1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \\
        -subj /CN=bank -keyout bank.key -out bank.pem
    python secretflow_party.py --role receiver --session <32 hex> --protocol RR22 \\
        --self 0.0.0.0:7001 --peer node.example:7002 --ids ids.txt \\
        --cert bank.pem --key bank.key --peer-cert node.pem --out matches.txt

``--ids`` holds one identifier per line, already in datavalley's normal form (docs/PSI.md section 1:
phones in E.164 such as ``+8613800138000``; resident ID numbers as 18 characters with an upper-case X).
The engine compares SHA-256 digests of those normal forms, exactly as the datavalley node does.

Roles: the contract's consumer is the receiver (rank 0) and learns the intersection; the provider is the
sender (rank 1) and learns nothing but the other side's set size. The datavalley node checks the
contract at the exchange, reads only the registered data, and records the use on the ledger.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path


def digest(normalised: str) -> str:
    return hashlib.sha256(normalised.encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=["receiver", "sender"], required=True)
    ap.add_argument("--session", required=True, help="the session ID agreed with the node's operator")
    ap.add_argument("--protocol", choices=["RR22", "KKRT", "ECDH"], default="RR22")
    ap.add_argument("--self", dest="own", required=True, help="host:port this party listens on")
    ap.add_argument("--peer", required=True, help="host:port of the datavalley node's engine")
    ap.add_argument("--ids", type=Path, required=True)
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--peer-cert", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="receiver: where to write the matching IDs")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args(argv)

    import spu.libspu.link as link
    import spu.psi as psi

    receiver = args.role == "receiver"
    work = Path(tempfile.mkdtemp(prefix="sf-party-"))
    source, result = work / "input.csv", work / "output.csv"
    seen: set[str] = set()
    with args.ids.open(encoding="utf-8") as ids, source.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "id"] if receiver else ["key"])
        for line in ids:
            value = line.strip()
            if value and digest(value) not in seen:
                seen.add(digest(value))
                writer.writerow([digest(value), value] if receiver else [digest(value)])

    desc = link.Desc()
    desc.id = args.session
    parties = [args.own, args.peer] if receiver else [args.peer, args.own]
    for i, address in enumerate(parties):
        desc.add_party(f"p{i}", address)
    desc.recv_timeout_ms = desc.http_timeout_ms = int(args.timeout * 1000)
    desc.connect_retry_times, desc.connect_retry_interval_ms = 120, 250
    desc.enable_ssl = True
    for opts in (desc.server_ssl_opts, desc.client_ssl_opts):
        opts.cert.certificate_path, opts.cert.private_key_path = str(args.cert), str(args.key)
        opts.verify.ca_file_path, opts.verify.verify_depth = str(args.peer_cert), 1
    lctx = link.create_brpc(desc, 0 if receiver else 1)
    conf = psi.PsiProtocolConfig(
        protocol=getattr(psi.PsiProtocol, f"PROTOCOL_{args.protocol}"),
        receiver_rank=0,
        broadcast_result=False,
    )
    if args.protocol == "ECDH":
        conf.ecdh_params = psi.EcdhParams(curve=psi.EllipticCurveType.CURVE_25519)
    report = psi.psi_execute(
        psi.PsiExecuteConfig(
            protocol_conf=conf,
            input_params=psi.InputParams(path=str(source), selected_keys=["key"], keys_unique=True),
            output_params=psi.OutputParams(path=str(result), disable_alignment=True),
        ),
        lctx,
    )
    summary = {"role": args.role, "set_size": len(seen), "intersection": None}
    if receiver:
        with result.open(encoding="utf-8", newline="") as fh:
            matches = [row["id"] for row in csv.DictReader(fh)]
        summary["intersection"] = len(matches)
        if args.out:
            args.out.write_text("".join(m + "\n" for m in matches), encoding="utf-8")
        assert report.intersection_count == len(matches)
    for path in (source, result):
        path.unlink(missing_ok=True)
    print(json.dumps(summary), file=sys.stderr)
    lctx.barrier()  # neither party leaves before the other has finished its run
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without tearing the link down or running the engine's static destructors: both race the
    # engine's TLS network threads, which crashes the process now and then after a complete run.
    os._exit(code)
