"""Classification and grading on the exchange: the operator-editable rule set and the suggestion.

The node computes the PI report and profile next to the data; the exchange re-derives the suggested
grade from them with *its* current rule set (GB/T 43697-2024, "take the higher level"), so a provider
cannot pick its own rules. The provider declares a grade; the effective grade before the operator
confirms is the higher of the two.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from datavalley.canonical import digest
from datavalley.catalog.classify import DEFAULT_RULES, RuleSet, suggest_grade
from datavalley.catalog.errors import SourceError
from datavalley.catalog.pii import PIIReport
from datavalley.catalog.profile import ResourceProfile
from datavalley.catalog.schema import CanonicalType, Column, Schema
from datavalley.errors import InvalidInput
from datavalley.exchange import Context
from datavalley.identity.model import Role
from datavalley.rights.model import Grade
from datavalley.rights.tables import RuleSetRow


def current_rules(session: Session) -> tuple[int, RuleSet]:
    """The newest stored rule set and its version (0 = the built-in default)."""
    row = session.execute(
        select(RuleSetRow).order_by(RuleSetRow.version.desc()).limit(1)
    ).scalar_one_or_none()
    if row is None:
        return 0, DEFAULT_RULES
    return row.version, RuleSet.from_dict(row.rules, origin=f"stored rule set v{row.version}")


def _schema(schema: list[list[str]]) -> Schema:
    cols = []
    for name, type_ in schema:
        try:
            cols.append(Column(name, CanonicalType(type_), type_))
        except ValueError:
            allowed = ", ".join(t.value for t in CanonicalType)
            raise InvalidInput(
                f"schema column {name!r} has unknown type {type_!r} (allowed: {allowed})", field="schema"
            ) from None
    return Schema(tuple(cols))


def parse_report(pii: dict[str, Any], row_count: int) -> PIIReport:
    """The node's PI report as a typed value (raises :class:`InvalidInput` naming the bad field)."""
    data = {"columns": [], "sensitive": False, "estimated_individuals": 0, "row_count": row_count, **pii}
    try:
        return TypeAdapter(PIIReport).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"analysis.pii.{where}: {first['msg']}", field="pii") from None


def parse_profile(profile: dict[str, Any], row_count: int) -> ResourceProfile:
    data = {
        "row_count": row_count,
        "duplicate_rows": 0,
        "freshness": None,
        "freshness_column": None,
        "columns": [],
        **profile,
    }
    try:
        return TypeAdapter(ResourceProfile).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"analysis.profile.{where}: {first['msg']}", field="profile") from None


def suggest(
    session: Session,
    schema: list[list[str]],
    pii: dict[str, Any],
    row_count: int,
    sector: str,
    profile: dict[str, Any] | None = None,
) -> tuple[Grade, tuple[str, ...]]:
    """Suggested grade and reasons for a registration, with the exchange's current rules."""
    version, rules = current_rules(session)
    s = suggest_grade(
        _schema(schema), parse_report(pii, row_count), parse_profile(profile or {}, row_count), sector, rules
    )
    return Grade(s.grade.value), (*s.reasons, f"rule set v{version}")


def get_rules(ctx: Context) -> dict[str, Any]:
    """The rule set in force (any authenticated caller may read it)."""
    version, rules = current_rules(ctx.session)
    return {"version": version, "rules": rules.to_dict()}


def set_rules(ctx: Context, *, rules: dict[str, Any]) -> dict[str, Any]:
    """The operator replaces the rule set; it applies to registrations and changes from now on.

    Raises :class:`InvalidInput` with the path of the first bad rule.
    """
    ctx.require(Role.OPERATOR, action="editing the classification rules")
    try:
        parsed = RuleSet.from_dict(rules, origin="rules")
    except SourceError as exc:
        raise InvalidInput(str(exc), field="rules") from exc
    version, _ = current_rules(ctx.session)
    stored = parsed.to_dict()
    ctx.session.add(
        RuleSetRow(version=version + 1, rules=stored, created_by=ctx.principal.member_id, created_at=ctx.now)
    )
    ctx.emit("classification.rules_updated", [], {"version": version + 1, "rules_digest": digest(stored)})
    return {"version": version + 1, "rules": stored}
