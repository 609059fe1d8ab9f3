"""One vocabulary of argument and option help, for parameters that mean the same in every command.

:func:`fill_help` runs when a command group is loaded (``cli/main.py``) and gives every parameter without
its own ``help=`` the text registered here: first ``"group command name"``, then the bare name. A test
(tests/cli/test_first_run.py) fails on any command or option left without help.
"""

from __future__ import annotations

from typing import Any

HELP: dict[str, str] = {
    # IDs
    "participant_id": "Participant ID (p_…).",
    "member_id": "Member ID (m_…).",
    "token_id": "Token ID (t_…).",
    "key_id": "Key ID (k_…).",
    "resource_id": "Resource ID (r_…).",
    "right_id": "Right ID (rt_…).",
    "objection_id": "Objection ID.",
    "product_id": "Product ID (prd_…).",
    "contract_id": "Contract ID (c_…).",
    "payment_id": "Payment ID (pay_…).",
    "dispute_id": "Dispute ID.",
    "event_id": "Event ID (from a receipt or `ledger entries`).",
    "index": "Ledger entry index.",
    "verifier_key": "The witness's C2SP verifier key (name+hash+key).",
    # paging and filters
    "limit": "Most items on this page (1-500).",
    "cursor": "The next_cursor of the previous page.",
    "status": "Only items in this status.",
    "state": "Only contracts in this state.",
    "contract_state": "Only contracts in this state (REQUESTED, OFFERED, FINALIZED, TERMINATED …).",
    "start": "First entry index.",
    "q": "Search text.",
    "kind": "Product kind: private_analytics, set_intersection or file_delivery.",
    "sector": "Sector, e.g. transport, finance, public_administration.",
    "grade": "Grade: general, important or core.",
    "provider": "Only this provider's (participant ID).",
    "pii": "Only resources with (or without) personal information.",
    "holder": "Only rights held by this participant.",
    "all_": "Include revoked and expired rights.",
    "participant": "Participant ID (operators and auditors only; default: yours).",
    # data sources
    "location": "A file (csv, parquet, jsonl) or a database URL.",
    "table": "Table name, for a database URL.",
    "format": "csv, parquet or jsonl (default: from the file name).",
    "file": "A JSON file.",
    "out": "Write to this file.",
    "html": "HTML instead of JSON.",
    "version": "Resource version (default: current).",
    # common words
    "name": "Name.",
    "description": "A description.",
    "tag": "A tag (repeatable).",
    "reason": "Why (kept as a digest on the ledger).",
    "note": "A note for the record.",
    "purpose": "The purpose (must be one the terms allow).",
    "territory": "A territory code, e.g. CN or CN-52 (repeatable).",
    "region": "A region where results may be used (repeatable).",
    "until": "End of validity (ISO 8601, e.g. 2027-12-31T00:00:00Z).",
    "days": "Validity in days.",
    "role": "A role (repeatable): provider, consumer, operator, auditor, regulator.",
    "reference": "Your bank transfer reference.",
    "idempotency_key": "Retry safely: the same key repeats the first answer instead of a second payment.",
    "sublicensable": "The grantee may grant further rights under this one.",
    "parent": "The right this one is granted under (a sublicence).",
    "operator": "The operator's participant ID.",
    "to": "The receiving participant ID.",
    "upheld": "Uphold the objection (default: dismiss).",
    "resolution": "The resolution, kept as a digest on the ledger.",
    "approve": "Approve the listing (default: reject).",
    "max_uses": "Most uses the contract buys.",
    "valid_days": "Contract term in days.",
    "resume": "Resume a suspended contract instead of suspending it.",
    "reject": "Reject the payment instead of confirming it.",
    "claim": "What went wrong.",
    "refund": "Refund to the consumer, in fen.",
    "penalty": "Penalty paid by the provider, in fen.",
    "terminate_contract": "Also terminate the contract.",
    # cross-border
    "record_id": "Cross-border record ID.",
    "year": "Calendar year (Beijing time; default: this year).",
    "within_days": "Approvals expiring within this many days.",
    "pdf": "PDF instead of JSON.",
    # compute
    "pool_id": "Compute pool ID.",
    "job_id": "Compute job ID.",
    "cluster": "Only pools in this data-centre cluster (see `pools topology`).",
    "cores": "CPU cores.",
    "memory_gb": "Memory in GiB.",
    "gpus": "GPUs (recorded, not scheduled yet).",
    "host": "Interface to listen on.",
    "port": "Port to listen on.",
    "epsilon": "Privacy budget ε this query spends.",
}


def fill_help(command: Any, path: tuple[str, ...] = ()) -> None:
    """Give parameters without help the vocabulary's text (recursively through groups)."""
    sub = getattr(command, "commands", None)
    if isinstance(sub, dict):
        for name, child in sub.items():
            fill_help(child, (*path, name))
        return
    for param in getattr(command, "params", []):
        if getattr(param, "help", "x"):
            continue
        key = " ".join((*path, param.name or ""))
        text = HELP.get(key) or HELP.get(param.name or "")
        if text:
            param.help = text
