"""Best-effort file skipping from ``predicateHints``, ``jsonPredicateHints`` and ``limitHint``.

A file is skipped only when its statistics prove no row can match; anything we cannot parse or evaluate
keeps the file (the protocol makes hints best effort and the client re-applies them). Hints never widen
what the policy allows: they only choose among the recipient's own policy-applied files.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

_SQL = re.compile(
    r"""^\s*(?:(?P<col>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op><=|>=|<>|=|<|>)\s*(?P<lit>'(?:[^']|'')*'|-?[0-9]+(?:\.[0-9]+)?)
        |(?P<lit2>'(?:[^']|'')*'|-?[0-9]+(?:\.[0-9]+)?)\s*(?P<op2><=|>=|<>|=|<|>)\s*(?P<col2>[A-Za-z_][A-Za-z0-9_]*))\s*$""",
    re.X,
)
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "<>": "<>"}
_JSON_OPS = {
    "equal": "=",
    "lessThan": "<",
    "lessThanOrEqual": "<=",
    "greaterThan": ">",
    "greaterThanOrEqual": ">=",
}


class HasStats(Protocol):
    rows: int
    stats: dict[str, Any]


def _literal(text: str) -> Any:
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return float(text) if "." in text else int(text)


def _may_match(stats: dict[str, Any], col: str, op: str, value: Any) -> bool:
    lo = stats.get("minValues", {}).get(col)
    hi = stats.get("maxValues", {}).get(col)
    if lo is None or hi is None:
        return True
    try:
        if isinstance(value, str) != isinstance(lo, str):
            return True
        match op:
            case "=":
                return bool(lo <= value <= hi)
            case "<":
                return bool(lo < value)
            case "<=":
                return bool(lo <= value)
            case ">":
                return bool(hi > value)
            case ">=":
                return bool(hi >= value)
            case _:
                return not (lo == hi == value)
    except TypeError:
        return True


def _sql_ok(stats: dict[str, Any], hint: Any) -> bool:
    if not isinstance(hint, str):
        return True
    m = _SQL.match(hint)
    if m is None:
        return True
    if m.group("col"):
        return _may_match(stats, m.group("col"), m.group("op"), _literal(m.group("lit")))
    return _may_match(stats, m.group("col2"), _FLIP[m.group("op2")], _literal(m.group("lit2")))


def _json_value(leaf: dict[str, Any]) -> Any:
    value, typ = leaf.get("value"), leaf.get("valueType")
    if typ in ("int", "long"):
        return int(value)  # type: ignore[arg-type]
    if typ in ("float", "double"):
        return float(value)  # type: ignore[arg-type]
    if typ in ("string", "date"):
        return str(value)
    raise ValueError(typ)


def _json_ok(stats: dict[str, Any], node: Any, depth: int = 0) -> bool:
    """May a row of the file satisfy ``node``? True when unsure."""
    if not isinstance(node, dict) or depth > 32:
        return True
    op, kids = node.get("op"), node.get("children") or []
    try:
        if op == "and":
            return all(_json_ok(stats, k, depth + 1) for k in kids)
        if op == "or":
            return any(_json_ok(stats, k, depth + 1) for k in kids)
        if op in _JSON_OPS and len(kids) == 2:
            a, b = kids
            if a.get("op") == "column" and b.get("op") == "literal":
                return _may_match(stats, a["name"], _JSON_OPS[op], _json_value(b))
            if b.get("op") == "column" and a.get("op") == "literal":
                return _may_match(stats, b["name"], _FLIP[_JSON_OPS[op]], _json_value(a))
    except (ValueError, TypeError, KeyError, AttributeError):
        return True
    return True


def select_files(files: list[Any], predicates: Any, json_predicates: Any, limit: Any) -> list[Any]:
    """The files to offer: those the hints cannot exclude, then enough of them to cover ``limitHint``."""
    chosen = list(files)
    if isinstance(predicates, list):
        chosen = [f for f in chosen if all(_sql_ok(f.stats, h) for h in predicates)]
    if isinstance(json_predicates, str) and json_predicates:
        try:
            tree = json.loads(json_predicates)
        except ValueError:
            tree = None
        chosen = [f for f in chosen if _json_ok(f.stats, tree)]
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
        out, rows = [], 0
        for f in chosen:
            if rows >= limit:
                break
            out.append(f)
            rows += f.rows
        chosen = out
    return chosen
