"""CLI groups: participants, members, tokens, keys."""

from __future__ import annotations

from pathlib import Path

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.table import Table

from datavalley.cli.state import CURSOR, LIMIT, console, kv_table, list_table, output, state
from datavalley.identity.model import Member, Participant
from datavalley.keys import fingerprint, load_private_key, public_key_b64, write_private_key

participants = typer.Typer(help="Organisations on the exchange.", no_args_is_help=True)
members = typer.Typer(help="People and service accounts of a participant.", no_args_is_help=True)
tokens = typer.Typer(help="API tokens.", no_args_is_help=True)
keys = typer.Typer(help="Ed25519 keys.", no_args_is_help=True)


def _participant_table(p: Participant) -> Table:
    return kv_table(
        f"participant {p.id}",
        [
            ("name", p.name),
            ("kind", p.kind.value),
            ("country", p.country),
            ("registry id", p.registry_id),
            ("roles", ", ".join(r.value for r in p.roles)),
            ("status", p.status.value),
            ("created", p.created_at.isoformat()),
            ("verified", p.verified_at.isoformat() if p.verified_at else None),
        ],
    )


def _member_row(m: Member) -> list[object]:
    return [
        m.id,
        m.name,
        m.kind,
        ", ".join(r.value for r in m.roles),
        "yes" if m.admin else "",
        "active" if m.active else "deactivated",
    ]


@participants.command("register")
def register(
    ctx: typer.Context,
    name: str = typer.Option(..., help="Legal name of the organisation."),
    kind: str = typer.Option(
        "enterprise", help="enterprise, public_body, research_institute, individual_business"
    ),
    registry_id: str = typer.Option(
        ..., "--registry-id", help="USCC for CN organisations, else registry number"
    ),
    country: str = typer.Option("CN", help="ISO 3166-1 alpha-2 country code"),
    role: list[str] = typer.Option(..., "--role", help="Role the organisation holds (repeat)."),
    admin_name: str = typer.Option(..., help="Name of its first admin member."),
    idempotency_key: str | None = typer.Option(None, help="Make a retry safe."),
) -> None:
    """Register an organisation (pending) and its first admin member. Operator only."""
    st = state(ctx)
    res = st.client().register_participant(
        name=name,
        kind=kind,
        registry_id=registry_id,
        roles=role,
        admin_name=admin_name,
        country=country,
        idempotency_key=idempotency_key,
    )
    p, m = res.value
    output(st, {"participant": p, "admin_member": m}, _participant_table(p), receipts=res.receipts)
    if not st.as_json:
        console.print(f"admin member: [bold]{m.id}[/bold]")


@participants.command("list")
def list_(ctx: typer.Context, status: str | None = None, limit: int = 50, cursor: str | None = None) -> None:
    """List participants visible to you."""
    st = state(ctx)
    page = st.client().list_participants(status=status, limit=limit, cursor=cursor)
    rows = [
        [p.id, p.name, p.kind.value, p.registry_id, ", ".join(r.value for r in p.roles), p.status.value]
        for p in page.items
    ]
    output(
        st,
        {"items": page.items, "next_cursor": page.next_cursor},
        list_table("participants", ["id", "name", "kind", "registry id", "roles", "status"], rows),
    )


@participants.command("show")
def show(ctx: typer.Context, participant_id: str) -> None:
    """Show one participant."""
    st = state(ctx)
    p = st.client().get_participant(participant_id)
    output(st, p, _participant_table(p))


def _status(action: str) -> None:
    def command(ctx: typer.Context, participant_id: str, reason: str = typer.Option("", help="Why.")) -> None:
        st = state(ctx)
        res = st.client().change_participant_status(participant_id, action, reason)
        output(st, res.value, _participant_table(res.value), receipts=res.receipts)

    command.__doc__ = f"Operator: {action} a participant."
    participants.command(action)(command)


for _a in ("verify", "suspend", "reinstate"):
    _status(_a)


@members.command("add")
def add(
    ctx: typer.Context,
    participant_id: str,
    name: str = typer.Option(...),
    role: list[str] = typer.Option(..., "--role"),
    kind: str = typer.Option("person", help="person or service"),
    admin: bool = typer.Option(False, help="May manage the participant's members, tokens and keys."),
) -> None:
    """Add a member to a participant (its admins)."""
    st = state(ctx)
    res = st.client().add_member(participant_id, name=name, roles=role, kind=kind, admin=admin)
    output(
        st,
        res.value,
        list_table("member", ["id", "name", "kind", "roles", "admin", "status"], [_member_row(res.value)]),
        receipts=res.receipts,
    )


@members.command("list")
def list_members(ctx: typer.Context, participant_id: str, limit: int = 50, cursor: str | None = None) -> None:
    """List a participant's members."""
    st = state(ctx)
    page = st.client().list_members(participant_id, limit=limit, cursor=cursor)
    output(
        st,
        {"items": page.items, "next_cursor": page.next_cursor},
        list_table(
            "members",
            ["id", "name", "kind", "roles", "admin", "status"],
            [_member_row(m) for m in page.items],
        ),
    )


@members.command("deactivate")
def deactivate(ctx: typer.Context, member_id: str) -> None:
    """Deactivate a member; its tokens stop working."""
    st = state(ctx)
    res = st.client().deactivate_member(member_id)
    output(st, res.value, None, receipts=res.receipts)


@tokens.command("issue")
def issue(
    ctx: typer.Context,
    member_id: str,
    scope: list[str] = typer.Option(None, "--scope", help="Role the token carries (repeat; default: all)."),
    ttl_days: int | None = typer.Option(None, help="Lifetime in days."),
    description: str = "",
) -> None:
    """Issue an API token. The secret is printed once and never stored."""
    st = state(ctx)
    res = st.client().issue_token(member_id, scopes=scope or None, ttl_days=ttl_days, description=description)
    t = res.value
    output(
        st,
        t,
        kv_table(
            f"token {t.token.id}",
            [
                ("member", t.token.member_id),
                ("scopes", ", ".join(s.value for s in t.token.scopes)),
                ("expires", t.token.expires_at.isoformat()),
                ("secret (shown once)", t.secret),
            ],
        ),
        receipts=res.receipts,
    )


@tokens.command("list")
def list_tokens(ctx: typer.Context, member_id: str, limit: int = LIMIT, cursor: str | None = CURSOR) -> None:
    """List a member's tokens (metadata only)."""
    st = state(ctx)
    page = st.client().list_tokens(member_id, limit=limit, cursor=cursor)
    rows = [
        [
            t.id,
            ", ".join(s.value for s in t.scopes),
            t.expires_at.isoformat(),
            t.revoked_at.isoformat() if t.revoked_at else "",
        ]
        for t in page.items
    ]
    output(
        st,
        {"items": page.items, "next_cursor": page.next_cursor},
        list_table("tokens", ["id", "scopes", "expires", "revoked"], rows),
    )


@tokens.command("revoke")
def revoke(ctx: typer.Context, token_id: str) -> None:
    """Revoke a token at once."""
    st = state(ctx)
    res = st.client().revoke_token(token_id)
    output(st, res.value, None, receipts=res.receipts)


@keys.command("new")
def new_key(
    ctx: typer.Context, out: Path = typer.Option(..., help="Where to write the private key (0600).")
) -> None:
    """Generate an Ed25519 key pair; the private key is written 0600 and never leaves this machine."""
    st = state(ctx)
    key = Ed25519PrivateKey.generate()
    write_private_key(out, key)
    pub = public_key_b64(key)
    output(
        st,
        {"private_key_file": str(out), "public_key": pub, "fingerprint": fingerprint(pub)},
        kv_table(
            "new Ed25519 key",
            [("private key file", out), ("public key", pub), ("fingerprint", fingerprint(pub))],
        ),
    )


@keys.command("register")
def register_key(
    ctx: typer.Context,
    participant_id: str,
    private_key: Path = typer.Option(..., help="PEM file written by `keys new`."),
) -> None:
    """Register a key's public half for a participant, proving possession with a local signature."""
    st = state(ctx)
    res = st.client().register_key(participant_id, load_private_key(private_key))
    k = res.value
    output(
        st,
        k,
        kv_table(
            f"key {k.id}",
            [("participant", k.participant_id), ("public key", k.public_key), ("fingerprint", k.fingerprint)],
        ),
        receipts=res.receipts,
    )


@keys.command("list")
def list_keys(
    ctx: typer.Context, participant_id: str, limit: int = LIMIT, cursor: str | None = CURSOR
) -> None:
    """List a participant's public keys."""
    st = state(ctx)
    page = st.client().list_keys(participant_id, limit=limit, cursor=cursor)
    rows = [
        [k.id, k.fingerprint, k.created_at.isoformat(), k.revoked_at.isoformat() if k.revoked_at else ""]
        for k in page.items
    ]
    output(
        st,
        {"items": page.items, "next_cursor": page.next_cursor},
        list_table("keys", ["id", "fingerprint", "created", "revoked"], rows),
    )


@keys.command("revoke")
def revoke_key(ctx: typer.Context, key_id: str) -> None:
    """Revoke a participant key."""
    st = state(ctx)
    res = st.client().revoke_key(key_id)
    output(st, res.value, None, receipts=res.receipts)
