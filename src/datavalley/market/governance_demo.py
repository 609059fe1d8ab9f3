"""The demo's governance act: an objection freezes a resource and a use under a live contract is refused
with its reason — nothing computed, nothing charged — until the operator resolves the objection."""

from __future__ import annotations

from typing import Any, Protocol

from rich.console import Console

from datavalley.client import Client
from datavalley.errors import Conflict


def _step() -> int:
    """The next step number of the demo's story (numbered in the order told)."""
    from datavalley.demo import n

    return n()


class _Party(Protocol):
    participant_id: str
    client: Client


def governance_act(
    console: Console, op: Client, people: dict[str, Any], registered: dict[str, Any], contract_id: str
) -> dict[str, Any]:
    """Run the act on the logistics trips (objector: the data operator; user: the insurer's contract)."""
    resource_id: str = registered["resource_ids"]["logistics"]
    console.rule("rights and status govern every use: an objection freezes the data")
    objector: _Party = people["data_operator"]
    insurer: _Party = people["insurer"]
    objection = objector.client.file_objection(
        resource_id, "part of these trips were collected under our own driver service contracts"
    ).value
    status = objector.client.get_resource(resource_id).status.value
    console.print(
        f"{_step()}. The data operator objects to the trips registration ({objection.id}): the resource is "
        f"[yellow]{status}[/yellow]; both parties of every contract on it are notified on the ledger."
    )
    before = insurer.client.get_contract(contract_id)
    refused: Conflict | None = None
    try:
        insurer.client.query(contract_id, "SELECT COUNT(*) AS trips FROM trips", epsilon=0.1)
    except Conflict as exc:
        refused = exc
    after = insurer.client.get_contract(contract_id)
    if refused is not None:
        console.print(
            f"   the insurer's next query is refused before anything runs: [red]{refused.http_status} "
            f"{refused.details.get('reason')}[/red] — {refused.message}"
        )
    charged = (after.uses - before.uses, after.released - before.released)
    console.print(f"   uses recorded and money released while frozen: {charged[0]}, {charged[1]} fen")
    op.resolve_objection(
        objection.id, upheld=False, resolution="the holder's driver contracts cover every trip"
    )
    console.print(
        "   the operator dismisses the objection: the registration is live again and use may resume "
        "(an upheld objection would have revoked it, terminated the contracts and refunded their escrow)."
    )
    return {
        "objection": objection.id,
        "frozen_status": status,
        "refused_status": refused.http_status if refused else None,
        "refused_reason": refused.details.get("reason") if refused else None,
        "charged_while_frozen": charged,
        "status_after": insurer.client.get_resource(resource_id).status.value,
    }
