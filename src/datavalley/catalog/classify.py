"""Classification and grading suggestion per GB/T 43697-2024 (数据安全技术 数据分类分级规则).

Grades are ordered ``general`` < ``important`` < ``core``. Every rule that matches proposes its grade and
the suggestion takes the highest (the standard's "就高" principle across columns and rules). The rules
are operator data: a :class:`RuleSet` loads from JSON or a dict and is validated strictly, so a typo in
a rule file is an error naming the rule and field, not a silently ignored rule.

Rule fields (all conditions present must hold; at least one condition is required):

``id`` (unique), ``grade`` (general|important|core), ``description``, ``basis`` (citation text),
``sectors`` (the resource's sector contains any of these, case-insensitive),
``column_keywords`` (some column name contains any of these, case-insensitive),
``pii_kinds`` (any of these PI kinds was detected),
``min_individuals`` (estimated individuals whose PI is present),
``min_sensitive_individuals`` (the same, counted only when sensitive PI is present),
``min_rows``.

The default rule set is a starting point, not legal advice: thresholds follow common readings of the
standard's important-data factors (large-scale personal information, sensitive PI at scale, population
health, precise geographic information at scale, financial accounts, critical-infrastructure
operations). It contains no ``core`` rule: core data is only ever suggested by a rule an operator adds
explicitly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from datavalley.catalog.errors import SourceError
from datavalley.catalog.pii import PIIKind, PIIReport
from datavalley.catalog.profile import ResourceProfile
from datavalley.catalog.schema import Schema

__all__ = ["DEFAULT_RULES", "Grade", "Rule", "RuleSet", "Suggestion", "suggest_grade"]


class Grade(StrEnum):
    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Grade.GENERAL: 0, Grade.IMPORTANT: 1, Grade.CORE: 2}
_CONDITIONS = (
    "sectors",
    "column_keywords",
    "pii_kinds",
    "min_individuals",
    "min_sensitive_individuals",
    "min_rows",
)
_RULE_KEYS = frozenset({"id", "grade", "description", "basis", *_CONDITIONS})


@dataclass(frozen=True)
class Rule:
    """One grading rule (see the module docstring for the fields' meaning)."""

    id: str
    grade: Grade
    description: str = ""
    basis: str = ""
    sectors: tuple[str, ...] = ()
    column_keywords: tuple[str, ...] = ()
    pii_kinds: tuple[PIIKind, ...] = ()
    min_individuals: int | None = None
    min_sensitive_individuals: int | None = None
    min_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON-ready data (only the fields that are set)."""
        data: dict[str, Any] = {"id": self.id, "grade": self.grade.value}
        for key in ("description", "basis"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        for key in ("sectors", "column_keywords"):
            if getattr(self, key):
                data[key] = list(getattr(self, key))
        if self.pii_kinds:
            data["pii_kinds"] = [k.value for k in self.pii_kinds]
        for key in ("min_individuals", "min_sensitive_individuals", "min_rows"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


@dataclass(frozen=True)
class RuleSet:
    """An ordered, validated set of grading rules."""

    rules: tuple[Rule, ...]
    version: int = 1

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "rule set") -> RuleSet:
        """Validate and build a rule set from parsed JSON.

        Raises:
            SourceError: naming ``origin`` and the offending path, e.g. ``rules[2].grade``.
        """
        if not isinstance(data, Mapping):
            raise SourceError(origin, f"must be a JSON object, not {type(data).__name__}")
        unknown = set(data) - {"version", "rules"}
        if unknown:
            raise SourceError(origin, f"unknown top-level key(s): {', '.join(sorted(map(str, unknown)))}")
        version = data.get("version", 1)
        if version != 1 or isinstance(version, bool):
            raise SourceError(origin, f"version: unsupported {version!r} (only 1)")
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list):
            raise SourceError(origin, "rules: must be a list of rule objects")
        rules = tuple(_parse_rule(raw, f"rules[{i}]", origin) for i, raw in enumerate(raw_rules))
        seen: set[str] = set()
        for i, rule in enumerate(rules):
            if rule.id in seen:
                raise SourceError(origin, f"rules[{i}].id: duplicate id {rule.id!r}")
            seen.add(rule.id)
        return cls(rules, version)

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> RuleSet:
        """Load from a JSON file path, or from JSON text if ``source`` starts with ``{``.

        Raises:
            SourceError: unreadable file, invalid JSON (with line/column) or invalid rules.
        """
        text = os.fspath(source)
        if text.lstrip().startswith("{"):
            origin = "rule set (JSON text)"
        else:
            origin = str(Path(text).resolve())
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as exc:
                raise SourceError(origin, f"cannot read rule file: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(
                origin, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc
        return cls.from_dict(data, origin=origin)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data that :meth:`from_dict` accepts."""
        return {"version": self.version, "rules": [r.to_dict() for r in self.rules]}


def _strings(value: Any, path: str, origin: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise SourceError(origin, f"{path}: must be a non-empty list of strings")
    for j, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise SourceError(origin, f"{path}[{j}]: must be a non-empty string, not {item!r}")
    return tuple(item.strip() for item in value)


def _count(value: Any, path: str, origin: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SourceError(origin, f"{path}: must be a non-negative integer, not {value!r}")
    return value


def _parse_rule(raw: Any, path: str, origin: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise SourceError(origin, f"{path}: must be an object, not {type(raw).__name__}")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise SourceError(
            origin,
            f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
            f"allowed: {', '.join(sorted(_RULE_KEYS))}",
        )
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise SourceError(origin, f"{path}.id: must be a non-empty string")
    path = f"{path} ({rule_id})"
    grade_text = raw.get("grade")
    try:
        grade = Grade(str(grade_text)) if isinstance(grade_text, str) else Grade("")
    except ValueError:
        raise SourceError(
            origin, f"{path}.grade: {grade_text!r} is not one of {', '.join(g.value for g in Grade)}"
        ) from None
    for key in ("description", "basis"):
        if key in raw and not isinstance(raw[key], str):
            raise SourceError(origin, f"{path}.{key}: must be a string")
    if not any(key in raw for key in _CONDITIONS):
        raise SourceError(
            origin, f"{path}: has no condition (one of {', '.join(_CONDITIONS)}); it would match everything"
        )
    kinds: tuple[PIIKind, ...] = ()
    if "pii_kinds" in raw:
        names = _strings(raw["pii_kinds"], f"{path}.pii_kinds", origin)
        try:
            kinds = tuple(PIIKind(n) for n in names)
        except ValueError as exc:
            raise SourceError(
                origin, f"{path}.pii_kinds: {exc}; known kinds: {', '.join(k.value for k in PIIKind)}"
            ) from None

    def opt_count(key: str) -> int | None:
        return _count(raw[key], f"{path}.{key}", origin) if key in raw else None

    return Rule(
        id=rule_id.strip(),
        grade=grade,
        description=str(raw.get("description", "")),
        basis=str(raw.get("basis", "")),
        sectors=_strings(raw["sectors"], f"{path}.sectors", origin) if "sectors" in raw else (),
        column_keywords=(
            _strings(raw["column_keywords"], f"{path}.column_keywords", origin)
            if "column_keywords" in raw
            else ()
        ),
        pii_kinds=kinds,
        min_individuals=opt_count("min_individuals"),
        min_sensitive_individuals=opt_count("min_sensitive_individuals"),
        min_rows=opt_count("min_rows"),
    )


_BASIS = "GB/T 43697-2024 important-data identification factors"
_HEALTH_SECTORS = ["health", "medical", "healthcare", "hospital", "卫生", "医疗", "健康", "疾控"]
_CI_SECTORS = [
    "energy",
    "power",
    "electricity",
    "telecom",
    "water",
    "railway",
    "aviation",
    "能源",
    "电力",
    "通信",
    "水利",
    "铁路",
    "民航",
]

DEFAULT_RULES = RuleSet.from_dict(
    {
        "version": 1,
        "rules": [
            {
                "id": "pi-scale",
                "grade": "important",
                "description": "personal information of 1,000,000 or more individuals",
                "basis": _BASIS,
                "min_individuals": 1_000_000,
            },
            {
                "id": "sensitive-pi-scale",
                "grade": "important",
                "description": "sensitive personal information of 100,000 or more individuals",
                "basis": _BASIS,
                "min_sensitive_individuals": 100_000,
            },
            {
                "id": "population-health",
                "grade": "important",
                "description": "health data of 10,000 or more individuals in the health sector",
                "basis": _BASIS,
                "sectors": _HEALTH_SECTORS,
                "pii_kinds": ["health"],
                "min_individuals": 10_000,
            },
            {
                "id": "precise-location-scale",
                "grade": "important",
                "description": "precise locations (>= 4 decimals) in 1,000,000 or more records",
                "basis": _BASIS,
                "pii_kinds": ["coordinates"],
                "min_rows": 1_000_000,
            },
            {
                "id": "financial-accounts",
                "grade": "important",
                "description": "financial account data of 100,000 or more individuals",
                "basis": _BASIS,
                "pii_kinds": ["bank_card", "financial"],
                "min_individuals": 100_000,
            },
            {
                "id": "critical-infrastructure",
                "grade": "important",
                "description": "operational data of critical information infrastructure",
                "basis": _BASIS,
                "sectors": _CI_SECTORS,
                "column_keywords": [
                    "scada",
                    "substation",
                    "grid",
                    "topology",
                    "pipeline",
                    "vulnerability",
                    "变电站",
                    "电网",
                    "拓扑",
                    "管网",
                    "漏洞",
                ],
            },
        ],
    },
    origin="built-in default rules",
)


@dataclass(frozen=True)
class Suggestion:
    """The suggested grade and, for each matching rule, the rule and the evidence."""

    grade: Grade
    reasons: tuple[str, ...]


def _evidence(
    rule: Rule, schema: Schema, pii: PIIReport, profile: ResourceProfile, sector: str | None
) -> list[str] | None:
    evidence: list[str] = []
    if rule.sectors:
        folded = (sector or "").casefold()
        hit = next((s for s in rule.sectors if s.casefold() in folded), None) if folded else None
        if hit is None:
            return None
        evidence.append(f"sector {sector!r} matches {hit!r}")
    if rule.column_keywords:
        cols = [n for n in schema.names if any(k.casefold() in n.casefold() for k in rule.column_keywords)]
        if not cols:
            return None
        evidence.append(f"columns {', '.join(cols)} match {', '.join(rule.column_keywords)}")
    if rule.pii_kinds:
        found = [
            f"{c.column} ({', '.join(k.value for k in c.kinds if k in rule.pii_kinds)})"
            for c in pii.columns
            if set(c.kinds) & set(rule.pii_kinds)
        ]
        if not found:
            return None
        evidence.append(f"PI {', '.join(found)}")
    if rule.min_individuals is not None:
        if pii.estimated_individuals < rule.min_individuals:
            return None
        evidence.append(f"~{pii.estimated_individuals:,} individuals >= {rule.min_individuals:,}")
    if rule.min_sensitive_individuals is not None:
        # When sensitive PI is present it concerns the individuals the resource identifies.
        sensitive = pii.estimated_individuals if pii.sensitive else 0
        if sensitive < rule.min_sensitive_individuals:
            return None
        names = ", ".join(sorted(pii.sensitive_columns))
        evidence.append(
            f"~{sensitive:,} individuals with sensitive PI ({names}) >= {rule.min_sensitive_individuals:,}"
        )
    if rule.min_rows is not None:
        if profile.row_count < rule.min_rows:
            return None
        evidence.append(f"{profile.row_count:,} rows >= {rule.min_rows:,}")
    return evidence


def suggest_grade(
    schema: Schema,
    pii_report: PIIReport,
    profile: ResourceProfile,
    sector: str | None,
    rules: RuleSet = DEFAULT_RULES,
) -> Suggestion:
    """Suggest a grade: the highest grade of all matching rules (``general`` if none match).

    Each reason names the rule, its grade and the evidence that matched. Reasons are ordered by grade,
    highest first, then by rule order.
    """
    matched: list[tuple[Rule, list[str]]] = []
    for rule in rules.rules:
        evidence = _evidence(rule, schema, pii_report, profile, sector)
        if evidence is not None:
            matched.append((rule, evidence))
    if not matched:
        return Suggestion(Grade.GENERAL, ("no rule matched: general data",))
    matched.sort(key=lambda m: -m[0].grade.rank)
    reasons = tuple(
        f"{rule.id} -> {rule.grade.value}"
        + (f" ({rule.description})" if rule.description else "")
        + ": "
        + "; ".join(evidence)
        for rule, evidence in matched
    )
    return Suggestion(matched[0][0].grade, reasons)
