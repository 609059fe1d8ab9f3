"""The one enforcement hook: :func:`check_transfer`, called wherever data or results leave a node.

Called (with one line each) from :func:`datavalley.market.contracts.accept_contract` (``stage="accept"``)
and :func:`datavalley.market.contracts.record_use` (``stage="use"``) — every private SQL answer, every PSI
session (node to node) and every delivery read is metered there. Domestic transfers return at once.

For a cross-border transfer it gathers the *measured* facts (jurisdictions from verified registrations,
node locations attested by the operator, PI and sensitive-PI flags from registration analysis, important
data from grading, the exporter's distinct individuals this year from sketches), asks the pure engine
for the pathway, checks the records the pathway needs, and then either raises
:class:`~datavalley.errors.PolicyViolation` naming the pathway and what to file (nothing is written: the
caller's transaction rolls back) or writes the register row, the ledger event and — at a use — merges
the resource's sketch into the exporter's counter for the year, all in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from datavalley.crossborder import sketch
from datavalley.crossborder.engine import decide
from datavalley.crossborder.model import Decision, Pathway, Proposal
from datavalley.crossborder.rules import RuleSet, load
from datavalley.crossborder.tables import (
    CrossborderCounterRow,
    CrossborderFactsRow,
    CrossborderNodeRow,
    CrossborderRecordRow,
    CrossborderSketchRow,
    CrossborderTransferRow,
)
from datavalley.errors import PolicyViolation
from datavalley.exchange import Context
from datavalley.identity.tables import ParticipantRow
from datavalley.store.base import new_id

#: An aggregate counts as anonymised (PIPL art. 73(4)) only with groups of at least this many people.
ANONYMISED_MIN_GROUP = 10
AGGREGATE_MODES = frozenset({"cardinality", "aggregate"})


@dataclass(frozen=True)
class Assessment:
    """What :func:`assess` found: the proposal, the decision, missing records and the records relied on."""

    proposal: Proposal
    decision: Decision
    missing: tuple[tuple[str, ...], ...]
    records: tuple[str, ...]
    exporter_id: str
    recipient_id: str
    resources: tuple[Any, ...]
    sketch_needed: tuple[str, ...]
    non_personal_reason: str | None
    year: int
    counter_kind: str | None
    sketches: tuple[bytes, ...]

    stage: str = "use"

    @property
    def blocking(self) -> tuple[tuple[str, ...], ...]:
        """Missing records that stop this stage: all of them before data moves; at acceptance only a
        security assessment (the deal itself needs it; filings and consent are due before the first use)."""
        if self.stage == "accept":
            return tuple(g for g in self.missing if "security_assessment" in g)
        return self.missing

    @property
    def allowed(self) -> bool:
        return self.decision.pathway != Pathway.FORBIDDEN and not self.blocking and not self.sketch_needed


def jurisdiction(ctx: Context, participant_id: str) -> tuple[str, str]:
    """(participant's verified country, its node's attested location — the country if none)."""
    p = ctx.session.get(ParticipantRow, participant_id)
    country = p.country if p is not None else "CN"
    node = ctx.session.scalars(
        select(CrossborderNodeRow)
        .where(CrossborderNodeRow.participant_id == participant_id)
        .order_by(CrossborderNodeRow.created_at.desc(), CrossborderNodeRow.id.desc())
        .limit(1)
    ).first()
    return country, node.jurisdiction if node is not None else country


def year_of(now: datetime, rules: RuleSet) -> int:
    """The counting year: calendar year in Beijing time (CAC 2024 counts "since 1 January")."""
    return (now.astimezone(UTC) + timedelta(hours=rules.tz_offset_hours)).year


def _nature(
    kind: str, terms: dict[str, Any], operation: str | None, mode: str | None, k: int | None
) -> tuple[bool, str | None]:
    """(anonymised aggregate?, the PIPL art. 73(4) reasoning) for a use of this product kind."""
    privacy = terms.get("privacy") or {}
    group = k if k is not None else privacy.get("min_group_size")
    eps = privacy.get("epsilon")
    if kind == "private_analytics" and (group or 0) >= ANONYMISED_MIN_GROUP:
        return True, (
            f"differentially private aggregates (ε ≤ {eps} per contract) with groups of fewer than "
            f"{group} people suppressed: a result cannot identify a specific natural person and cannot "
            "be restored, so it is anonymised, not personal information (PIPL art. 73(4), art. 4(1))"
        )
    if kind == "set_intersection":
        modes = {mode} if mode else set(terms.get("psi_modes") or ())
        if modes and modes <= AGGREGATE_MODES:
            return True, (
                f"PSI {'/'.join(sorted(modes))}: only a count or a noised sum over the intersection leaves "
                "the node, never an identifier or a row; it cannot identify a specific natural person "
                "and cannot be restored (PIPL art. 73(4), art. 4(1))"
            )
    return False, None


def _records(ctx: Context, exporter: str) -> list[CrossborderRecordRow]:
    return list(
        ctx.session.scalars(
            select(CrossborderRecordRow).where(
                CrossborderRecordRow.exporter_id == exporter, CrossborderRecordRow.status == "active"
            )
        )
    )


def _matches(
    r: CrossborderRecordRow, now: datetime, contract_id: str, recipient: str, dest: str, resources: list[str],
    individuals: int,
) -> bool:  # fmt: skip
    if r.valid_from > now or (r.valid_until is not None and now >= r.valid_until):
        return False
    if r.contract_id is not None and r.contract_id != contract_id:
        return False
    if r.recipient_id is not None and r.recipient_id != recipient:
        return False
    scope = r.scope or {}
    if scope.get("jurisdictions") and dest not in scope["jurisdictions"]:
        return False
    if scope.get("resources") and not set(resources) <= set(scope["resources"]):
        return False
    cap = scope.get("max_individuals")
    return not (isinstance(cap, int) and individuals > cap)


def assess(
    ctx: Context,
    contract: Any,
    *,
    stage: str,
    operation: str | None = None,
    mode: str | None = None,
    min_group_size: int | None = None,
) -> Assessment | None:
    """Decide a transfer under ``contract`` (a ContractRow); None when it is domestic."""
    from datavalley.market.tables import ProductRow
    from datavalley.rights.tables import ResourceRow

    rules = load()
    exporter, recipient = contract.provider_id, contract.consumer_id
    _, origin = jurisdiction(ctx, exporter)
    r_country, r_node = jurisdiction(ctx, recipient)
    dest = next((j for j in (r_country, r_node) if j != origin), origin)
    if dest == origin:
        return None
    product = ctx.session.get(ProductRow, contract.product_id)
    assert product is not None
    res = [r for rid in product.resource_ids if (r := ctx.session.get(ResourceRow, rid)) is not None]
    terms = (contract.policy or {}).get("terms") or product.terms
    anonymised, why = _nature(product.kind, terms, operation, mode, min_group_size)
    personal = any(r.pii_present for r in res)
    sensitive = personal and any(r.sensitive_pii for r in res)
    facts = ctx.session.get(CrossborderFactsRow, exporter)
    ifacts = ctx.session.get(CrossborderFactsRow, recipient)
    year = year_of(ctx.now, rules)
    records = _records(ctx, exporter)
    bases = frozenset(
        str(r.scope.get("basis"))
        for r in records
        if r.kind == "basis" and r.contract_id == contract.id and _live(r, ctx.now)
    )
    # counting "since 1 January" is the CAC rule: only exports from mainland China are counted
    counted = personal and not anonymised and origin == "CN"
    counter_kind = ("sensitive" if sensitive else "pi") if counted else None
    needed: list[str] = []
    sketches: list[bytes] = []
    projected = 0
    if counter_kind is not None:
        for r in res:
            if not r.pii_present:
                continue
            row = ctx.session.get(CrossborderSketchRow, (r.id, r.fingerprint))
            if row is None:
                needed.append(r.id)
            else:
                sketches.append(row.sketch)
        counter = ctx.session.get(CrossborderCounterRow, (exporter, year, counter_kind))
        merged = sketch.union(counter.sketch if counter else None, *sketches)
        projected = max(
            [sketch.bounds(merged)[1], counter.upper_bound if counter else 0]
            + [r.estimated_individuals for r in res if r.pii_present]
        )
    proposal = Proposal(
        origin=origin,
        recipient=dest,
        personal=personal,
        sensitive=sensitive,
        important=any(r.effective_grade == "important" for r in res),
        core=any(r.effective_grade == "core" for r in res),
        anonymised=anonymised,
        sector=res[0].sector if res else "",
        categories=frozenset(t for r in res for t in r.tags)
        | ({"personal_information"} if personal else set()),
        ciio=bool(facts and facts.ciio),
        ftz_zone=facts.ftz_zone if facts else None,
        bases=bases,
        individuals_ub=projected if counter_kind == "pi" else 0,
        sensitive_ub=projected if counter_kind == "sensitive" else 0,
        exporter_role=facts.gdpr_role if facts else "controller",
        importer_role=ifacts.gdpr_role if ifacts else "controller",
        on=ctx.now.date().isoformat(),
    )
    decision = decide(proposal, rules)
    used: list[str] = []
    missing: list[tuple[str, ...]] = []
    rids = [r.id for r in res]
    for group in decision.requires:
        hit = None
        for rec in records:
            if rec.kind not in group:
                continue
            if rec.kind == "consent":
                continue
            if _matches(rec, ctx.now, contract.id, recipient, dest, rids, projected):
                hit = rec
                break
        if group == ("consent",):
            sensitive_ids = {r.id for r in res if r.sensitive_pii}
            covered = {rec.resource_id for rec in records if rec.kind == "consent" and _live(rec, ctx.now)}
            if sensitive_ids <= covered:
                used.extend(
                    rec.id for rec in records if rec.kind == "consent" and rec.resource_id in sensitive_ids
                )
                continue
        if hit is None:
            missing.append(group)
        else:
            used.append(hit.id)
    if stage == "accept":
        needed = []  # sketches are needed before data moves, not to accept
    return Assessment(
        proposal, decision, tuple(missing), tuple(used), exporter, recipient, tuple(res), tuple(needed),
        why if anonymised else None, year, counter_kind, tuple(sketches), stage,
    )  # fmt: skip


def _live(r: CrossborderRecordRow, now: datetime) -> bool:
    return r.status == "active" and r.valid_from <= now and (r.valid_until is None or now < r.valid_until)


FILE_HINT = {
    "security_assessment": "a CAC security assessment approval "
    "(datavalley crossborder file security_assessment)",
    "standard_contract": "a standard contract with its filing number (datavalley crossborder file "
    "standard_contract)",
    "certification": "a PI protection certification",
    "consent": "evidence of separate consent for the sensitive PI (datavalley crossborder file consent)",
    "scc": "SCC 2021/914 signed for this contract",
    "tia": "a transfer impact assessment",
}


def refusal_message(a: Assessment, contract_id: str) -> str:
    d = a.decision
    if d.pathway == Pathway.FORBIDDEN:
        return (
            f"cross-border transfer under contract {contract_id} is forbidden: "
            f"{d.reasons[0]} ({d.articles[0]})"
        )
    parts = []
    if a.blocking:
        parts.append("file " + "; and ".join(" or ".join(FILE_HINT[k] for k in g) for g in a.blocking))
    if a.sketch_needed:
        parts.append(
            "the provider's node must submit the identifier sketch of "
            + ", ".join(a.sketch_needed)
            + " (datavalley crossborder sketch RESOURCE)"
        )
    return (
        f"cross-border transfer {a.proposal.origin} → {a.proposal.recipient} under contract {contract_id} "
        f"needs the {d.pathway.value} pathway ({', '.join(d.articles)}): " + "; ".join(parts)
    )


def record(ctx: Context, a: Assessment, contract_id: str, *, stage: str, operation: str | None) -> str:
    """Write the register row and the ledger event for an assessment (allowed or refused)."""
    d = a.decision
    row = CrossborderTransferRow(
        id=new_id("xb"),
        stage=stage,
        contract_id=contract_id,
        exporter_id=a.exporter_id,
        recipient_id=a.recipient_id,
        origin=a.proposal.origin,
        destination=a.proposal.recipient,
        operation=operation,
        pathway=d.pathway.value,
        exemption=d.exemption,
        allowed=a.allowed,
        personal=a.proposal.personal and not a.proposal.anonymised,
        non_personal_reason=a.non_personal_reason,
        articles=list(d.articles),
        missing=[list(g) for g in a.missing] + ([["sketch"]] if a.sketch_needed else []),
        records=list(a.records),
        decision=d.to_json(),
        year=a.year,
        individuals_ub=a.proposal.individuals_ub,
        sensitive_ub=a.proposal.sensitive_ub,
        rules_version=d.rules_version,
        created_at=ctx.now,
    )
    ctx.session.add(row)
    ctx.emit(
        "crossborder.transfer" if a.allowed else "crossborder.refused",
        [row.id, contract_id, a.exporter_id, a.recipient_id],
        {
            "id": row.id,
            "stage": stage,
            "contract": contract_id,
            "operation": operation,
            "origin": row.origin,
            "destination": row.destination,
            "pathway": row.pathway,
            "exemption": row.exemption,
            "allowed": row.allowed,
            "personal": row.personal,
            "non_personal": a.non_personal_reason is not None,
            "articles": row.articles,
            "missing": row.missing,
            "records": row.records,
            "year": row.year,
            "individuals_ub": row.individuals_ub,
            "sensitive_ub": row.sensitive_ub,
            "rules": row.rules_version,
        },
    )
    return row.id


def _count(ctx: Context, a: Assessment) -> None:
    """Merge the transferred resources' sketches into the exporter's counter for the year (row-locked)."""
    if a.counter_kind is None or not a.decision.counts or not a.sketches:
        return
    key = (a.exporter_id, a.year, a.counter_kind)
    stmt = (
        select(CrossborderCounterRow)
        .where(
            CrossborderCounterRow.exporter_id == key[0],
            CrossborderCounterRow.year == key[1],
            CrossborderCounterRow.kind == key[2],
        )
        .with_for_update()
    )
    counter = ctx.session.scalars(stmt).first()
    if counter is None:
        # first transfer of the year: create the row without racing a concurrent first transfer, then lock it
        values = {
            "exporter_id": key[0], "year": key[1], "kind": key[2], "sketch": sketch.union(),
            "estimate": 0.0, "upper_bound": 0, "updated_at": ctx.now,
        }  # fmt: skip
        insert: Any = pg_insert if ctx.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        ctx.session.execute(insert(CrossborderCounterRow).values(**values).on_conflict_do_nothing())
        counter = ctx.session.scalars(stmt.execution_options(populate_existing=True)).one()
    merged = sketch.union(counter.sketch, *a.sketches)
    est, ub = sketch.bounds(merged)
    counter.sketch, counter.estimate = merged, est
    counter.upper_bound = max(ub, counter.upper_bound)
    counter.updated_at = ctx.now
    ctx.emit(
        "crossborder.counted",
        [a.exporter_id],
        {"exporter": a.exporter_id, "year": a.year, "kind": a.counter_kind, "estimate": round(est, 1),
         "upper_bound": counter.upper_bound},
    )  # fmt: skip


def check_transfer(
    ctx: Context,
    contract: Any,
    *,
    stage: str,
    operation: str | None = None,
    mode: str | None = None,
    min_group_size: int | None = None,
) -> Decision | None:
    """The hook: allow (and record, and count) a transfer under ``contract``, or raise PolicyViolation.

    ``contract`` is the locked :class:`~datavalley.market.tables.ContractRow`; ``stage`` is ``accept`` or
    ``use``. Returns the decision (None for a domestic transfer).
    """
    a = assess(ctx, contract, stage=stage, operation=operation, mode=mode, min_group_size=min_group_size)
    if a is None:
        return None
    if not a.allowed:
        raise PolicyViolation(
            refusal_message(a, contract.id),
            pathway=a.decision.pathway.value,
            articles=list(a.decision.articles),
            missing=[list(g) for g in a.blocking],
            sketches_needed=list(a.sketch_needed),
        )
    record(ctx, a, contract.id, stage=stage, operation=operation)
    if stage == "use":
        _count(ctx, a)
    return a.decision
