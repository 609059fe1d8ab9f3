"""The policy engine: ODRL 2.2 usage policies, built, validated and evaluated in one place.

A contract's policy is an ``odrl:Agreement`` in JSON-LD (docs/PROTOCOL.md §7). This module is the only
code that reads one: :func:`build_agreement` writes it from negotiated terms, :func:`parse` validates any
ODRL document we are given (our own or a stored one) into typed :class:`Terms`, and :func:`evaluate`
answers "may this use happen now, and what is left?" naming every constraint that fails.

Supported (the profile we enforce; anything else in a policy is refused at parse time, because a
constraint we do not understand is a constraint we would silently ignore):

- permission actions ``dv:aggregateQuery``, ``dv:intersect``, ``dv:deliver``;
- constraints: ``purpose`` isAnyOf, ``dateTime`` gteq/lt, ``count`` lteq, ``spatial`` isAnyOf,
  ``dv:minGroupSize`` gteq, ``dv:privacyBudget`` lteq (ε), ``dv:privacyUnit`` eq, ``dv:mode`` isAnyOf
  (PSI modes), ``dv:maxQuantity`` lteq (delivered rows/MB);
- delivery constraints (``dv:deliver``, docs/DELIVERY.md): ``dv:column`` isAnyOf (the columns delivered),
  ``dv:piTreatment`` eq (``exclude`` | ``pseudonymise`` personal columns not licensed), ``dv:licensedPI``
  isAnyOf (personal columns delivered in clear), ``dv:rowFilter`` eq (row conditions, AND-ed),
  ``dv:maxBytes`` lteq (bytes delivered over the term);
- duties: ``compensate`` (payment) — recorded, enforced by the accounting;
- prohibitions (any action, e.g. ``dv:reidentify``, ``distribute``) — recorded, attested by signing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from datavalley.errors import InvalidInput

ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"
DV_NS = "https://datavalley.dev/ns/odrl#"
CONTEXT: list[Any] = [ODRL_CONTEXT, {"dv": DV_NS, "xsd": "http://www.w3.org/2001/XMLSchema#"}]

ACTIONS = ("dv:aggregateQuery", "dv:intersect", "dv:deliver", "dv:compute")
DEFAULT_PROHIBITIONS = ("dv:reidentify", "distribute")
PSI_MODES = ("cardinality", "intersection", "aggregate")


def urn(kind: str, ident: str) -> str:
    return f"urn:datavalley:{kind}:{ident}"


@dataclass(frozen=True)
class Terms:
    """The enforceable content of a usage policy."""

    uid: str
    assigner: str
    assignee: str
    target: str
    action: str
    purposes: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime
    max_uses: int | None = None
    regions: tuple[str, ...] = ()
    min_group_size: int | None = None
    privacy_budget: float | None = None
    privacy_unit: str | None = None
    psi_modes: tuple[str, ...] = ()
    max_quantity: int | None = None
    prohibitions: tuple[str, ...] = DEFAULT_PROHIBITIONS
    duties: tuple[dict[str, Any], ...] = ()
    columns: tuple[str, ...] = ()
    pi_treatment: str | None = None
    licensed_pi: tuple[str, ...] = ()
    row_filter: tuple[dict[str, Any], ...] = ()
    max_bytes: int | None = None


PI_TREATMENTS = ("exclude", "pseudonymise")


@dataclass(frozen=True)
class UseRequest:
    """What a node asks before a use."""

    action: str
    purpose: str
    region: str
    at: datetime
    quantity: int = 1
    privacy_cost: float = 0.0
    mode: str | None = None
    min_group_size: int | None = None  # the group size the node will enforce


@dataclass(frozen=True)
class UseState:
    """What has been used so far under the contract."""

    uses: int = 0
    budget_spent: float = 0.0
    quantity: int = 0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: tuple[str, ...]
    uses_left: int | None
    budget_left: float | None
    over_budget: bool = False
    failed: tuple[str, ...] = field(default=())


def _dt(value: datetime) -> dict[str, str]:
    return {"@value": value.isoformat().replace("+00:00", "Z"), "@type": "xsd:dateTime"}


def build_agreement(terms: Terms) -> dict[str, Any]:
    """The ODRL 2.2 JSON-LD agreement for ``terms`` (the inverse of :func:`parse`)."""
    c: list[dict[str, Any]] = [
        {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": list(terms.purposes)},
        {"leftOperand": "dateTime", "operator": "gteq", "rightOperand": _dt(terms.valid_from)},
        {"leftOperand": "dateTime", "operator": "lt", "rightOperand": _dt(terms.valid_until)},
    ]
    if terms.max_uses is not None:
        c.append({"leftOperand": "count", "operator": "lteq", "rightOperand": terms.max_uses})
    if terms.regions:
        c.append({"leftOperand": "spatial", "operator": "isAnyOf", "rightOperand": list(terms.regions)})
    if terms.min_group_size is not None:
        c.append({"leftOperand": "dv:minGroupSize", "operator": "gteq", "rightOperand": terms.min_group_size})
    if terms.privacy_budget is not None:
        c.append(
            {"leftOperand": "dv:privacyBudget", "operator": "lteq", "rightOperand": terms.privacy_budget}
        )
    if terms.privacy_unit is not None:
        c.append({"leftOperand": "dv:privacyUnit", "operator": "eq", "rightOperand": terms.privacy_unit})
    if terms.psi_modes:
        c.append({"leftOperand": "dv:mode", "operator": "isAnyOf", "rightOperand": list(terms.psi_modes)})
    if terms.max_quantity is not None:
        c.append({"leftOperand": "dv:maxQuantity", "operator": "lteq", "rightOperand": terms.max_quantity})
    if terms.columns:
        c.append({"leftOperand": "dv:column", "operator": "isAnyOf", "rightOperand": list(terms.columns)})
    if terms.pi_treatment is not None:
        c.append({"leftOperand": "dv:piTreatment", "operator": "eq", "rightOperand": terms.pi_treatment})
    if terms.licensed_pi:
        c.append(
            {"leftOperand": "dv:licensedPI", "operator": "isAnyOf", "rightOperand": list(terms.licensed_pi)}
        )
    if terms.row_filter:
        c.append(
            {
                "leftOperand": "dv:rowFilter",
                "operator": "eq",
                "rightOperand": [dict(f) for f in terms.row_filter],
            }
        )
    if terms.max_bytes is not None:
        c.append({"leftOperand": "dv:maxBytes", "operator": "lteq", "rightOperand": terms.max_bytes})
    permission: dict[str, Any] = {"target": terms.target, "action": terms.action, "constraint": c}
    if terms.duties:
        permission["duty"] = [dict(d) for d in terms.duties]
    return {
        "@context": CONTEXT,
        "@type": "Agreement",
        "uid": terms.uid,
        "assigner": terms.assigner,
        "assignee": terms.assignee,
        "permission": [permission],
        "prohibition": [{"target": terms.target, "action": a} for a in terms.prohibitions],
    }


def _bad(msg: str) -> InvalidInput:
    return InvalidInput(f"ODRL policy: {msg}", field="policy")


def _strings(v: Any, name: str) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise _bad(f"{name} needs a non-empty list of strings")
    return tuple(v)


def _number(v: Any, name: str, *, integer: bool) -> Any:
    if isinstance(v, dict):
        v = v.get("@value")
    if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not isinstance(v, int)):
        raise _bad(f"{name} needs a{'n integer' if integer else ' number'}, got {v!r}")
    if v < 0:
        raise _bad(f"{name} must not be negative")
    return v


def _datetime(v: Any, name: str) -> datetime:
    raw = v.get("@value") if isinstance(v, dict) else v
    try:
        out = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"{name} is not an xsd:dateTime: {raw!r}") from None
    if out.tzinfo is None:
        raise _bad(f"{name} needs a time zone: {raw!r}")
    return out


def parse(policy: Any) -> Terms:
    """Validate an ODRL agreement against our profile and return its :class:`Terms`.

    Raises :class:`InvalidInput` naming the first problem: wrong type, missing parties, more than one
    permission, an unknown action, operand or operator, or a malformed value.
    """
    if not isinstance(policy, dict):
        raise _bad("must be a JSON object")
    if policy.get("@type") != "Agreement":
        raise _bad(f"@type must be 'Agreement', got {policy.get('@type')!r}")
    ctx = policy.get("@context")
    ctx_list = ctx if isinstance(ctx, list) else [ctx]
    if ODRL_CONTEXT not in ctx_list:
        raise _bad(f"@context must include {ODRL_CONTEXT}")
    for key in ("uid", "assigner", "assignee"):
        if not isinstance(policy.get(key), str) or not policy[key]:
            raise _bad(f"{key} is required")
    perms = policy.get("permission")
    if not isinstance(perms, list) or len(perms) != 1 or not isinstance(perms[0], dict):
        raise _bad("exactly one permission is supported")
    perm = perms[0]
    action = perm.get("action")
    if action not in ACTIONS:
        raise _bad(f"unknown action {action!r} (supported: {', '.join(ACTIONS)})")
    target = perm.get("target")
    if not isinstance(target, str) or not target:
        raise _bad("permission.target is required")
    values: dict[str, Any] = {}
    for con in perm.get("constraint") or []:
        if not isinstance(con, dict):
            raise _bad("a constraint must be an object")
        left, op, right = con.get("leftOperand"), con.get("operator"), con.get("rightOperand")
        match (left, op):
            case ("purpose", "isAnyOf" | "eq"):
                values["purposes"] = _strings(right, "purpose")
            case ("dateTime", "gteq"):
                values["valid_from"] = _datetime(right, "dateTime gteq")
            case ("dateTime", "lt"):
                values["valid_until"] = _datetime(right, "dateTime lt")
            case ("count", "lteq"):
                values["max_uses"] = _number(right, "count", integer=True)
            case ("spatial", "isAnyOf" | "eq"):
                values["regions"] = _strings(right, "spatial")
            case ("dv:minGroupSize", "gteq"):
                values["min_group_size"] = _number(right, "dv:minGroupSize", integer=True)
            case ("dv:privacyBudget", "lteq"):
                values["privacy_budget"] = float(_number(right, "dv:privacyBudget", integer=False))
            case ("dv:privacyUnit", "eq"):
                values["privacy_unit"] = _strings(right, "dv:privacyUnit")[0]
            case ("dv:mode", "isAnyOf" | "eq"):
                modes = _strings(right, "dv:mode")
                unknown = [m for m in modes if m not in PSI_MODES]
                if unknown:
                    raise _bad(f"unknown dv:mode {unknown} (supported: {', '.join(PSI_MODES)})")
                values["psi_modes"] = modes
            case ("dv:maxQuantity", "lteq"):
                values["max_quantity"] = _number(right, "dv:maxQuantity", integer=True)
            case ("dv:column", "isAnyOf"):
                values["columns"] = _strings(right, "dv:column")
            case ("dv:piTreatment", "eq"):
                if right not in PI_TREATMENTS:
                    raise _bad(f"dv:piTreatment must be one of {list(PI_TREATMENTS)}, got {right!r}")
                values["pi_treatment"] = right
            case ("dv:licensedPI", "isAnyOf"):
                values["licensed_pi"] = _strings(right, "dv:licensedPI")
            case ("dv:rowFilter", "eq"):
                from datavalley.delivery.policy import parse_row_filter

                values["row_filter"] = parse_row_filter(right, "dv:rowFilter")
            case ("dv:maxBytes", "lteq"):
                values["max_bytes"] = _number(right, "dv:maxBytes", integer=True)
            case _:
                raise _bad(f"unsupported constraint {left!r} {op!r}: it would not be enforced")
    for required in ("purposes", "valid_from", "valid_until"):
        if required not in values:
            raise _bad(f"a {required.replace('_', ' ')} constraint is required")
    if values["valid_until"] <= values["valid_from"]:
        raise _bad("the validity period ends before it starts")
    prohibitions = []
    for p in policy.get("prohibition") or []:
        if not isinstance(p, dict) or not isinstance(p.get("action"), str):
            raise _bad("a prohibition needs an action")
        prohibitions.append(p["action"])
    duties = perm.get("duty") or []
    if not isinstance(duties, list) or not all(isinstance(d, dict) for d in duties):
        raise _bad("duty must be a list of objects")
    return Terms(
        uid=policy["uid"],
        assigner=policy["assigner"],
        assignee=policy["assignee"],
        target=target,
        action=action,
        prohibitions=tuple(prohibitions),
        duties=tuple(duties),
        **values,
    )


def evaluate(policy: dict[str, Any] | Terms, request: UseRequest, state: UseState) -> Decision:
    """May ``request`` happen now under ``policy`` given what was used (``state``)? Names every failure."""
    t = policy if isinstance(policy, Terms) else parse(policy)
    failed: list[str] = []
    if request.action != t.action:
        failed.append(f"action {request.action} is not permitted (the contract permits {t.action})")
    if request.purpose not in t.purposes:
        failed.append(f"purpose {request.purpose!r} is not among the agreed purposes {list(t.purposes)}")
    if request.at < t.valid_from:
        failed.append(f"the contract is valid only from {t.valid_from.isoformat()}")
    if request.at >= t.valid_until:
        failed.append(f"the contract expired at {t.valid_until.isoformat()}")
    if t.regions and request.region not in t.regions:
        failed.append(f"region {request.region!r} is not among the allowed regions {list(t.regions)}")
    uses_left = None if t.max_uses is None else t.max_uses - state.uses
    if uses_left is not None and uses_left < 1:
        failed.append(f"all {t.max_uses} permitted uses have been made")
    if t.max_quantity is not None and state.quantity + request.quantity > t.max_quantity:
        failed.append(
            f"quantity {request.quantity} would exceed the agreed maximum {t.max_quantity} "
            f"({state.quantity} used)"
        )
    if t.min_group_size is not None and (request.min_group_size or 0) < t.min_group_size:
        failed.append(
            f"the node must enforce a minimum group size of at least {t.min_group_size} "
            f"(offered {request.min_group_size})"
        )
    if t.psi_modes and request.mode not in t.psi_modes:
        failed.append(f"mode {request.mode!r} is not among the agreed modes {list(t.psi_modes)}")
    budget_left = None if t.privacy_budget is None else t.privacy_budget - state.budget_spent
    over = False
    if request.privacy_cost < 0:
        failed.append("a privacy cost cannot be negative")
    elif budget_left is not None and request.privacy_cost > budget_left + 1e-12:
        over = True
        failed.append(
            f"privacy cost ε={request.privacy_cost:g} exceeds the budget left ε={max(budget_left, 0.0):g}"
        )
    allowed = not failed
    return Decision(
        allowed=allowed,
        reasons=tuple(failed) if failed else ("permitted",),
        uses_left=uses_left,
        budget_left=budget_left,
        over_budget=over and len(failed) == 1,
        failed=tuple(failed),
    )
