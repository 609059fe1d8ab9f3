"""CLI group ``ledger``: checkpoint, proofs, export, offline verify, witness."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from datavalley.cli.state import console, err_console, kv_table, list_table, output, state
from datavalley.errors import IntegrityError, InvalidInput
from datavalley.keys import load_private_key, write_private_key

ledger = typer.Typer(help="The verifiable ledger (RFC 9162 Merkle log).", no_args_is_help=True)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{what} file {path} does not exist", path=str(path)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} file {path} is not JSON: {exc}", path=str(path)) from exc


@ledger.command("checkpoint")
def checkpoint(ctx: typer.Context) -> None:
    """Print the latest signed checkpoint (with witness cosignatures)."""
    st = state(ctx)
    cp = st.client().checkpoint()
    if st.as_json:
        output(st, cp)
    else:
        typer.echo(cp["note"], nl=False)


@ledger.command("verifier-key")
def verifier_key_cmd(ctx: typer.Context) -> None:
    """The exchange's checkpoint verifier key (C2SP vkey): pin it for `ledger verify` and `cert verify`."""
    st = state(ctx)
    data = st.client().get("/v1/ledger/verifier-key")
    output(st, data, kv_table("exchange verifier key", list(data.items())))


@ledger.command("entries")
def entries(
    ctx: typer.Context,
    start: int = 0,
    end: int = typer.Option(..., help="Exclusive end index."),
    opened: bool = typer.Option(
        False, "--open", help="Open (and check) the committed entries you are a party to or oversee."
    ),
) -> None:
    """Print entries [start, end) as canonical JSON lines (as published: IDs are commitments)."""
    st = state(ctx)
    if opened:
        from datavalley.canonical import canonical_json

        clear = st.client().clear_entries(start, end)
        if st.as_json:
            output(st, {"start": start, "entries": clear})
            return
        for obj in clear:
            typer.echo(canonical_json(obj).decode("utf-8"))
        return
    items = [e.decode("utf-8") for e in st.client().entries(start, end)]
    if st.as_json:
        output(st, {"start": start, "entries": [json.loads(e) for e in items]})
        return
    for e in items:
        typer.echo(e)


@ledger.command("proof")
def proof(
    ctx: typer.Context, index: int, size: int | None = typer.Option(None, help="Tree size (default latest).")
) -> None:
    """Print the inclusion proof of entry INDEX."""
    st = state(ctx)
    c = st.client()
    size = size if size is not None else int(c.checkpoint()["size"])
    output(st, c.inclusion_proof(size, index=index))


@ledger.command("receipt")
def receipt(ctx: typer.Context, event_id: int, out: Path | None = None) -> None:
    """Fetch the receipt of an event (save it with --out: it is evidence you keep)."""
    st = state(ctx)
    r = st.client().receipt(event_id)
    if out:
        out.write_text(json.dumps(r, indent=2), "utf-8")
    output(st, r, kv_table(f"receipt for event {event_id}", [("entry index", r["index"]), ("saved to", out)]))


@ledger.command("export")
def export(ctx: typer.Context, out: Path = typer.Option(..., help="Bundle file to write.")) -> None:
    """Write a bundle (entries, checkpoints, keys) for offline verification."""
    st = state(ctx)
    bundle = st.client().export_ledger()
    out.write_text(json.dumps(bundle), "utf-8")
    output(
        st,
        {"file": str(out), "entries": len(bundle["entries"]), "checkpoints": len(bundle["checkpoints"])},
        kv_table(
            "ledger exported",
            [("file", out), ("entries", len(bundle["entries"])), ("checkpoints", len(bundle["checkpoints"]))],
        ),
    )


@ledger.command("verify")
def verify(
    ctx: typer.Context,
    bundle: Path | None = typer.Argument(None, help="Bundle file; omit to fetch from --server/local home."),
    verifier_key: str | None = typer.Option(
        None, help="Pinned exchange key (C2SP vkey); default: the bundle's."
    ),
    receipt: list[Path] = typer.Option([], "--receipt", help="Receipt file to check too (repeat)."),
    checkpoint: list[Path] = typer.Option(
        [], "--checkpoint", help="A signed checkpoint seen elsewhere (repeat)."
    ),
) -> None:
    """Verify a ledger bundle or live exchange offline: roots, signatures, consistency, receipts."""
    from datavalley.ledger.verify import verify_bundle

    st = state(ctx)
    data = _read_json(bundle, "bundle") if bundle else st.client().export_ledger()
    receipts = [_read_json(p, "receipt") for p in receipt]
    extra = [p.read_text("utf-8") for p in checkpoint]
    report = verify_bundle(data, verifier_key=verifier_key, receipts=receipts, extra_checkpoints=extra)
    if st.as_json:
        output(st, report)
    else:
        console.print(
            kv_table(
                "ledger verification",
                [
                    ("entries", report.entries),
                    ("signed checkpoints", report.checkpoints),
                    ("witness cosignatures", report.cosignatures),
                    ("receipts", report.receipts),
                    (
                        "result",
                        "[green]verified[/green]"
                        if report.ok
                        else f"[red]{len(report.findings)} problem(s)[/red]",
                    ),
                ],
            )
        )
        if report.findings:
            console.print(
                list_table("findings", ["kind", "what"], [[f.kind, f.message] for f in report.findings])
            )
    if not report.ok:
        raise IntegrityError(
            f"ledger verification found {len(report.findings)} problem(s): "
            + "; ".join(f.message for f in report.findings[:3])
        )


@ledger.command("witness-key")
def witness_key(
    ctx: typer.Context,
    name: str = typer.Option(..., help="Witness name, e.g. regulator.example/w1"),
    out: Path = typer.Option(..., help="Private key file to write (0600)."),
) -> None:
    """Create a witness key and print its verifier key for the operator to register."""
    from datavalley.ledger.note import CosignatureSigner

    key = Ed25519PrivateKey.generate()
    write_private_key(out, key)
    vkey = CosignatureSigner(name, key).verifier().verifier_key_string()
    output(
        state(ctx),
        {"name": name, "verifier_key": vkey, "private_key_file": str(out)},
        kv_table("witness key", [("name", name), ("verifier key", vkey), ("private key", out)]),
    )


@ledger.command("register-witness")
def register_witness(ctx: typer.Context, verifier_key: str) -> None:
    """Operator: accept cosignatures from a witness (its verifier key)."""
    st = state(ctx)
    res = st.client().register_witness(verifier_key)
    output(st, res.value, None, receipts=res.receipts)


@ledger.command("witness")
def witness(
    ctx: typer.Context,
    name: str = typer.Option(..., help="Witness name (as in its verifier key)."),
    key: Path = typer.Option(..., help="Witness private key file."),
    state_file: Path = typer.Option(
        Path("witness-state.json"), "--state", help="Where the witness remembers."
    ),
    interval: float = typer.Option(10.0, help="Seconds between rounds."),
    once: bool = typer.Option(False, help="Run one round and exit."),
) -> None:
    """Poll checkpoints, verify consistency with the last one seen, cosign (C2SP tlog-cosignature)."""
    from datavalley.ledger.note import CosignatureSigner
    from datavalley.ledger.witness import witness_round

    st = state(ctx)
    signer = CosignatureSigner(name, load_private_key(key))
    while True:
        r = witness_round(st.client(), signer, state_file)
        if st.as_json:
            typer.echo(json.dumps({"size": r.size, "cosigned": r.cosigned, "message": r.message}))
        else:
            err_console.print(f"[green]witness[/green] {r.message}")
        if once:
            return
        time.sleep(interval)
