"""CLI groups ``delivery`` (profiles, recipients, tokens) and ``watermark`` (leak tracing).

Thin shells over the ``/v1/delivery`` API (docs/DELIVERY.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from datavalley.cli.state import console, kv_table, list_table, output, state
from datavalley.errors import InvalidInput

__all__ = ["delivery_app", "watermark_app"]

delivery_app = typer.Typer(
    help="Delivery under contract: Delta Sharing profiles, recipients and tokens.", no_args_is_help=True
)
watermark_app = typer.Typer(help="Leak tracing: find whose delivered copy a file is.", no_args_is_help=True)


def _write_secret_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@delivery_app.command("profile")
def profile(
    ctx: typer.Context,
    contract_id: str = typer.Argument(..., help="The delivery contract."),
    out: Path = typer.Option(..., "--out", help="Where to write the Delta Sharing profile (mode 0600)."),
    recipient: str = typer.Option("default", help="The recipient (each gets its own token and watermark)."),
    rotate: bool = typer.Option(False, help="Revoke the recipient's earlier tokens."),
    ttl_days: int | None = typer.Option(None, help="Expire sooner than the contract."),
    endpoint: str | None = typer.Option(None, help="Public endpoint URL to put in the profile."),
) -> None:
    """Issue a sharing token for RECIPIENT of the contract and write its profile file."""
    st = state(ctx)
    body: dict[str, Any] = {"recipient": recipient, "rotate": rotate}
    if ttl_days is not None:
        body["ttl_days"] = ttl_days
    if endpoint is not None:
        body["endpoint"] = endpoint
    if out.exists() and out.is_dir():
        raise InvalidInput(f"--out {out} is a directory", field="out")
    data, receipts, _ = st.client().post(f"/v1/delivery/contracts/{contract_id}/tokens", body)
    _write_secret_file(out, json.dumps(data["profile"], indent=2) + "\n")
    shown = {k: v for k, v in data.items() if k != "profile"} | {"profile": str(out)}
    output(
        st,
        shown,
        kv_table(
            "delivery profile written",
            [
                ("profile file", out),
                ("endpoint", data["profile"]["endpoint"]),
                ("token", data["token_id"]),
                ("recipient", data["recipient_id"]),
                ("expires", data["expires_at"]),
                ("revoked tokens", ", ".join(data["revoked_token_ids"]) or "none"),
            ],
        ),
        receipts=receipts,
    )


@delivery_app.command("recipients")
def recipients(ctx: typer.Context, contract_id: str) -> None:
    """The contract's recipients and their active tokens."""
    st = state(ctx)
    items = st.client().get(f"/v1/delivery/contracts/{contract_id}/recipients")["items"]
    output(
        st,
        items,
        list_table(
            f"recipients of {contract_id}",
            ["id", "name", "active tokens", "revoked"],
            [[i["id"], i["name"], i["active_tokens"], i["revoked_at"]] for i in items],
        ),
    )


@delivery_app.command("revoke")
def revoke(
    ctx: typer.Context, contract_id: str, recipient: str = typer.Option(..., help="Recipient name.")
) -> None:
    """Revoke a recipient and all its tokens (queries stop now, signed URLs within their lifetime)."""
    st = state(ctx)
    data, receipts, _ = st.client().post(
        f"/v1/delivery/contracts/{contract_id}/recipients/{recipient}/revoke"
    )
    output(
        st,
        data,
        kv_table("recipient revoked", [("id", data["id"]), ("revoked at", data["revoked_at"])]),
        receipts=receipts,
    )


@delivery_app.command("revoke-token")
def revoke_token(ctx: typer.Context, token_id: str) -> None:
    """Revoke one sharing token."""
    st = state(ctx)
    data, receipts, _ = st.client().post(f"/v1/delivery/tokens/{token_id}/revoke")
    output(st, data, kv_table("token revoked", list(data.items())), receipts=receipts)


@watermark_app.command("trace")
def trace(
    ctx: typer.Context, file: Path = typer.Argument(..., help="The suspect file (.csv, .parquet, .jsonl).")
) -> None:
    """Name the contract and recipient whose delivered copy FILE is, with a false-attribution bound."""
    st = state(ctx)
    if not file.is_file():
        raise InvalidInput(f"{file} is not a readable file", field="file")
    client = st.client()
    resp = client.request(
        "POST", "/v1/delivery/trace", content=file.read_bytes(), params={"filename": file.name}
    )
    report = resp.json()["data"]
    named = report["attributed"]
    if st.as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        rows = [
            [
                s["contract_id"],
                s["recipient_id"],
                s["pairs"],
                s["matches"],
                f"10^{s['false_attribution_log10']:.1f}",
                "yes" if s["delivered"] else "no",
            ]
            for s in report["scores"][:10]
        ]
        console.print(
            list_table(
                f"{file.name}: {report['rows']} rows, marked columns {report['columns']}, "
                f"{report['candidates']} candidate recipients",
                ["contract", "recipient", "pairs", "matches", "P(false attribution) ≤", "delivered"],
                rows,
            )
        )
        if named:
            console.print(
                f"[bold]attributed to contract {named['contract_id']}[/bold] "
                f"(recipient {named['recipient_id']}): "
                f"{named['matches']}/{named['pairs']} marks match; false-attribution probability ≤ "
                f"10^{named['false_attribution_log10']:.1f}"
            )
        else:
            console.print(
                f"not attributed: no recipient's watermark is present beyond α = {report['alpha']:g}"
            )
    if not named:
        raise typer.Exit(1)
