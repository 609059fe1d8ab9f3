"""Products and listing review.

A product is built on registered resources its provider holds, or may operate (a product operation
right). It carries a price and a *policy template* (``terms``): the purposes, regions, term, number of
uses and, for private analytics, the privacy rules any contract on it starts from (a contract may only
narrow them).

Listing: the provider submits; an automatic compliance checklist runs (:func:`compliance_checklist`);
the operator approves only when every item passes, or rejects with reasons; important data additionally
needs a regulator's approval; core data is refused outright. Delisting stops new orders, never running
contracts.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import and_, or_, select

from datavalley.canonical import digest
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyViolation
from datavalley.exchange import Context
from datavalley.identity.model import Role
from datavalley.market.model import ListingStatus, Market, Price, PriceModel, Product, ProductKind
from datavalley.market.policy import PSI_MODES
from datavalley.market.tables import ProductRow
from datavalley.rights.model import Grade, ResourceStatus, RightKind
from datavalley.rights.registration import get_row, oversees, require_verified
from datavalley.rights.rights import has_right
from datavalley.rights.tables import ResourceRow, RightRow
from datavalley.store.base import new_id
from datavalley.store.pages import Page, paginate

MAX_VALID_DAYS = 3660
TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def to_product(r: ProductRow) -> Product:
    return Product(
        id=r.id,
        provider_id=r.provider_id,
        name=r.name,
        description=r.description,
        kind=ProductKind(r.kind),
        market=Market(r.market),
        resource_ids=tuple(r.resource_ids),
        price=Price.from_json(r.price),
        terms=dict(r.terms),
        tags=tuple(r.tags),
        status=ListingStatus(r.status),
        checklist=tuple(r.checklist),
        review_note=r.review_note,
        regulator_approved=r.regulator_approved,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def parse_price(value: Any) -> Price:
    """Validate a price object: model, non-negative integer amount, subscription period, ascending tiers."""
    if not isinstance(value, dict):
        raise InvalidInput("price must be an object {model, amount, ...}", field="price")
    try:
        model = PriceModel(str(value.get("model")))
    except ValueError:
        models = ", ".join(m.value for m in PriceModel)
        raise InvalidInput(f"price.model must be one of {models}", field="price.model") from None
    amount = value.get("amount", 0)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise InvalidInput(
            "price.amount must be a non-negative integer of minor units (fen)", field="price.amount"
        )
    if model == PriceModel.FREE and amount != 0:
        raise InvalidInput("a free product has amount 0", field="price.amount")
    if model != PriceModel.FREE and amount == 0:
        raise InvalidInput(f"a {model.value} price needs an amount > 0", field="price.amount")
    currency = value.get("currency", "CNY")
    if currency != "CNY":
        raise InvalidInput("only CNY is settled by this exchange", field="price.currency")
    period = value.get("period_days")
    if model == PriceModel.SUBSCRIPTION:
        if not isinstance(period, int) or isinstance(period, bool) or not 1 <= period <= 366:
            raise InvalidInput(
                "a subscription needs period_days between 1 and 366", field="price.period_days"
            )
    elif period is not None:
        raise InvalidInput("period_days applies only to subscriptions", field="price.period_days")
    tiers_raw = value.get("tiers") or []
    tiers: list[tuple[int, int]] = []
    if tiers_raw and model not in (PriceModel.PER_QUERY, PriceModel.PER_ROW, PriceModel.PER_MB):
        raise InvalidInput("tiers apply only to metered prices", field="price.tiers")
    for t in tiers_raw:
        if (
            not isinstance(t, list | tuple)
            or len(t) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in t)
        ):
            raise InvalidInput(
                "each tier is [from_quantity, amount] with positive integers", field="price.tiers"
            )
        tiers.append((int(t[0]), int(t[1])))
    if [a for a, _ in tiers] != sorted({a for a, _ in tiers}) or (tiers and tiers[0][0] < 2):
        raise InvalidInput("tiers must start above quantity 1 and ascend strictly", field="price.tiers")
    return Price(model, amount, currency, period, tuple(tiers))


def _strs(value: Any, field: str, *, allow_empty: bool = False) -> list[str]:
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidInput(f"{field} must be a list of non-empty strings", field=field)
    out = sorted({v.strip() for v in value})
    if not out and not allow_empty:
        raise InvalidInput(f"{field} must name at least one value", field=field)
    return out


def _int(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{field} must be an integer between {lo} and {hi}", field=field)
    return value


def parse_terms(kind: ProductKind, value: Any) -> dict[str, Any]:
    """Validate a product's policy template."""
    if not isinstance(value, dict):
        raise InvalidInput("terms must be an object", field="terms")
    known = {
        "purposes",
        "psi",
        "regions",
        "max_uses",
        "valid_days",
        "privacy",
        "psi_modes",
        "max_quantity",
        "tables",
        "engine",
        "delivery",
        "pool_id",
    }
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidInput(f"unknown terms {unknown} (known: {sorted(known)})", field="terms")
    out: dict[str, Any] = {
        "purposes": _strs(value.get("purposes"), "terms.purposes"),
        "regions": _strs(value.get("regions", ["CN"]), "terms.regions"),
        "valid_days": _int(value.get("valid_days", 365), "terms.valid_days", 1, MAX_VALID_DAYS),
    }
    if value.get("max_uses") is not None:
        out["max_uses"] = _int(value["max_uses"], "terms.max_uses", 1, 10**9)
    if kind == ProductKind.PRIVATE_ANALYTICS:
        privacy = value.get("privacy")
        if not isinstance(privacy, dict):
            raise InvalidInput("a private analytics product needs terms.privacy", field="terms.privacy")
        p: dict[str, Any] = {
            "min_group_size": _int(privacy.get("min_group_size"), "terms.privacy.min_group_size", 2, 10**6)
        }
        budget = privacy.get("epsilon")
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget <= 100:
            raise InvalidInput(
                "terms.privacy.epsilon (the contract budget) must be in (0, 100]",
                field="terms.privacy.epsilon",
            )
        p["epsilon"] = float(budget)
        unit = privacy.get("privacy_unit")
        if unit is not None and (not isinstance(unit, str) or not unit):
            raise InvalidInput(
                "terms.privacy.privacy_unit must be a column name", field="terms.privacy.privacy_unit"
            )
        p["privacy_unit"] = unit
        extra = sorted(set(privacy) - {"min_group_size", "epsilon", "privacy_unit", "rules"})
        if extra:
            raise InvalidInput(f"unknown privacy terms {extra}", field="terms.privacy")
        if "rules" in privacy:
            if not isinstance(privacy["rules"], dict):
                raise InvalidInput("terms.privacy.rules must be an object", field="terms.privacy.rules")
            p["rules"] = privacy["rules"]
        out["privacy"] = p
    elif value.get("privacy") is not None and kind != ProductKind.SET_INTERSECTION:
        raise InvalidInput("privacy terms apply only to analytics and PSI products", field="terms.privacy")
    if kind == ProductKind.SET_INTERSECTION:
        modes = _strs(value.get("psi_modes", ["cardinality"]), "terms.psi_modes")
        bad = [m for m in modes if m not in PSI_MODES]
        if bad:
            raise InvalidInput(f"unknown PSI modes {bad} (known: {list(PSI_MODES)})", field="terms.psi_modes")
        out["psi_modes"] = modes
        out["psi"] = _psi_terms(value.get("psi"), aggregate="aggregate" in modes)
        if out["psi"].get("engine") == "secretflow" and modes != ["intersection"]:
            raise InvalidInput(
                "the SecretFlow PSI engine reveals the intersection to the receiver, so its products "
                "offer terms.psi_modes ['intersection'] only (docs/PSI.md section 9)",
                field="terms.psi_modes",
            )
        if "aggregate" in modes:
            privacy = value.get("privacy")
            eps = privacy.get("epsilon") if isinstance(privacy, dict) else None
            if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps <= 100:
                raise InvalidInput(
                    "aggregate PSI needs terms.privacy.epsilon (the contract's budget) in (0, 100]",
                    field="terms.privacy.epsilon",
                )
            per = (
                privacy.get("epsilon_per_session", min(float(eps), 1.0)) if isinstance(privacy, dict) else 1.0
            )
            if isinstance(per, bool) or not isinstance(per, int | float) or not 0 < per <= eps:
                raise InvalidInput(
                    "terms.privacy.epsilon_per_session must be in (0, epsilon]", field="terms.privacy"
                )
            out["privacy"] = {"epsilon": float(eps), "epsilon_per_session": float(per)}
    if value.get("engine") is not None:
        if kind != ProductKind.PRIVATE_ANALYTICS or value["engine"] not in ("duckdb", "spark"):
            raise InvalidInput(
                "terms.engine (duckdb or spark) applies to private analytics products", field="terms.engine"
            )
        out["engine"] = value["engine"]
    if value.get("tables") is not None:
        tables = value["tables"]
        if not isinstance(tables, dict) or not tables:
            raise InvalidInput("terms.tables maps SQL table names to resource IDs", field="terms.tables")
        for name, rid in tables.items():
            if not isinstance(name, str) or not TABLE_NAME.fullmatch(name) or not isinstance(rid, str):
                raise InvalidInput(
                    f"terms.tables: {name!r} must be a lower-case SQL name naming a resource ID",
                    field="terms.tables",
                )
        out["tables"] = dict(sorted(tables.items()))
    if kind == ProductKind.COMPUTE_POOL:
        if not isinstance(value.get("pool_id"), str):
            raise InvalidInput("a compute pool product names its pool (terms.pool_id)", field="terms.pool_id")
        out["pool_id"] = value["pool_id"]
    elif value.get("pool_id") is not None:
        raise InvalidInput("terms.pool_id applies only to compute pool products", field="terms.pool_id")
    metered = (ProductKind.FILE_DELIVERY, ProductKind.COMPUTE_POOL)
    if kind in metered and value.get("max_quantity") is not None:
        out["max_quantity"] = _int(value["max_quantity"], "terms.max_quantity", 1, 10**12)
    if value.get("delivery") is not None:
        if kind != ProductKind.FILE_DELIVERY:
            raise InvalidInput("delivery terms apply only to file delivery products", field="terms.delivery")
        from datavalley.delivery.policy import parse_delivery_terms

        out["delivery"] = parse_delivery_terms(value["delivery"])
    return out


PSI_ID_KINDS = ("phone", "cn_ric", "text")
PSI_ENGINES = ("datavalley", "secretflow")
SECRETFLOW_PROTOCOLS = ("RR22", "KKRT", "ECDH")


def _psi_terms(value: Any, *, aggregate: bool) -> dict[str, Any]:
    """``{"id_column", "id_kind", "columns": {name: [low, high]}}``: which column of the provider's data
    is matched, how IDs are normalised, and (aggregate mode) which integer columns may be summed."""
    if not isinstance(value, dict):
        raise InvalidInput(
            "a set intersection product needs terms.psi {id_column, id_kind}", field="terms.psi"
        )
    col, kind = value.get("id_column"), value.get("id_kind")
    if not isinstance(col, str) or not col:
        raise InvalidInput("terms.psi.id_column must name the ID column", field="terms.psi.id_column")
    if kind not in PSI_ID_KINDS:
        raise InvalidInput(f"terms.psi.id_kind must be one of {PSI_ID_KINDS}", field="terms.psi.id_kind")
    columns = value.get("columns") or {}
    if not isinstance(columns, dict):
        raise InvalidInput("terms.psi.columns maps column names to [low, high]", field="terms.psi.columns")
    out_cols = {}
    for name, bounds in columns.items():
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
            or bounds[0] > bounds[1]
        ):
            raise InvalidInput(
                f"terms.psi.columns.{name} must be [low, high] integers", field="terms.psi.columns"
            )
        out_cols[str(name)] = [int(bounds[0]), int(bounds[1])]
    if aggregate and not out_cols:
        raise InvalidInput("aggregate PSI needs at least one bounded column", field="terms.psi.columns")
    aggregates = value.get("aggregates") or {}
    if not isinstance(aggregates, dict):
        raise InvalidInput(
            "terms.psi.aggregates maps names to {function, column}", field="terms.psi.aggregates"
        )
    out_aggs = {}
    for name, spec in aggregates.items():
        if name not in out_cols:
            raise InvalidInput(
                f"terms.psi.aggregates.{name} needs its per-ID bounds in terms.psi.columns.{name}",
                field="terms.psi.aggregates",
            )
        fn = spec.get("function") if isinstance(spec, dict) else None
        column = spec.get("column") if isinstance(spec, dict) else None
        if fn not in PSI_FUNCTIONS or (fn != "count" and (not isinstance(column, str) or not column)):
            raise InvalidInput(
                f"terms.psi.aggregates.{name} must be {{function: {'|'.join(PSI_FUNCTIONS)}, column}} "
                "(count counts rows and takes no column)",
                field="terms.psi.aggregates",
            )
        out_aggs[str(name)] = {"function": fn, "column": None if fn == "count" else column}
    out: dict[str, Any] = {"id_column": col, "id_kind": kind, "columns": dict(sorted(out_cols.items()))}
    engine = value.get("engine", "datavalley")
    if engine not in PSI_ENGINES:
        raise InvalidInput(f"terms.psi.engine must be one of {PSI_ENGINES}", field="terms.psi.engine")
    if engine == "secretflow":  # SecretFlow's engine (docs/PSI.md section 9); RR22 suits large sets
        protocol = value.get("protocol", "RR22")
        if protocol not in SECRETFLOW_PROTOCOLS:
            raise InvalidInput(
                f"terms.psi.protocol must be one of {SECRETFLOW_PROTOCOLS}", field="terms.psi.protocol"
            )
        out.update(engine=engine, protocol=protocol)
    elif value.get("protocol") is not None:
        raise InvalidInput(
            "terms.psi.protocol applies to engine 'secretflow' only", field="terms.psi.protocol"
        )
    if out_aggs:
        out["aggregates"] = dict(sorted(out_aggs.items()))
    return out


#: Per-ID functions a PSI aggregate may apply to a provider's rows (docs/PSI.md, "Aggregates").
PSI_FUNCTIONS = ("sum", "count", "min", "max")


def _resources(ctx: Context, ids: Any, provider: str) -> list[ResourceRow]:
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise InvalidInput("resource_ids must list at least one resource", field="resource_ids")
    rows = []
    for rid in sorted(set(ids)):
        row = get_row(ctx, rid)
        if row.status not in (ResourceStatus.REGISTERED, ResourceStatus.FROZEN):
            raise Conflict(f"resource {rid} is {row.status}: it cannot back a product", resource_id=rid)
        if not (
            has_right(ctx, rid, provider, RightKind.HOLDING)
            or has_right(ctx, rid, provider, RightKind.PRODUCT_OPERATION)
        ):
            raise Forbidden(
                f"participant {provider} neither holds resource {rid} "
                "nor has a product operation right on it",
                resource_id=rid,
            )
        rows.append(row)
    return rows


def create_product(
    ctx: Context,
    *,
    name: str,
    description: str = "",
    kind: str,
    resource_ids: list[str],
    price: dict[str, Any],
    terms: dict[str, Any],
    tags: list[str] | None = None,
) -> Product:
    """Create a draft product on resources the caller holds or may operate."""
    ctx.require(Role.PROVIDER, action="creating a product")
    require_verified(ctx, "creating a product")
    me = ctx.principal.participant_id
    assert me is not None
    try:
        k = ProductKind(kind)
    except ValueError:
        raise InvalidInput(
            f"kind must be one of {', '.join(x.value for x in ProductKind)}", field="kind"
        ) from None
    name = (name or "").strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("name must be 1 to 200 characters", field="name")
    p = parse_price(price)
    if (k == ProductKind.COMPUTE_POOL) != (p.model == PriceModel.PER_CORE_HOUR):
        raise InvalidInput("compute pools, and only they, are priced per core-hour", field="price.model")
    t = parse_terms(k, terms)
    if k == ProductKind.COMPUTE_POOL:  # rests on a registered compute pool, not on data resources
        from datavalley.compute.pools import check_pool_product

        rows = check_pool_product(ctx, t, resource_ids, me)
    else:
        rows = _resources(ctx, resource_ids, me)
        from datavalley.market.terms import check_against_resources

        check_against_resources(k, t, rows)
    ids = {r.id for r in rows}
    if "tables" in t:
        if set(t["tables"].values()) != ids or len(t["tables"]) != len(ids):
            raise InvalidInput(
                "terms.tables must name each of the product's resources exactly once", field="terms.tables"
            )
    elif k == ProductKind.PRIVATE_ANALYTICS:
        if len(ids) > 1:
            raise InvalidInput(
                "a multi-resource analytics product must name its tables (terms.tables)", field="terms.tables"
            )
        t["tables"] = {"data": rows[0].id}
    market = Market.PRIMARY if any(r.public_data for r in rows) else Market.SECONDARY
    tag_list = _strs(tags or [], "tags", allow_empty=True)
    row = ProductRow(
        id=new_id("prd"),
        provider_id=me,
        name=name,
        description=description or "",
        kind=k.value,
        market=market.value,
        resource_ids=[r.id for r in rows],
        price=p.to_json(),
        terms=t,
        tags=tag_list,
        status=ListingStatus.DRAFT.value,
        checklist=[],
        review_note=None,
        regulator_approved=False,
        search_text=" ".join([name, description or "", *tag_list, k.value]).lower(),
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    ctx.emit(
        "product.created",
        [row.id, me, *row.resource_ids],
        {"id": row.id, "kind": k.value, "market": market.value, "price": p.to_json(), "terms": t},
    )
    return to_product(row)


def compliance_checklist(ctx: Context, row: ProductRow) -> list[dict[str, Any]]:
    """The automatic listing checks: each ``{check, ok, detail}``."""
    items: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        items.append({"check": name, "ok": ok, "detail": detail})

    resources = [ctx.session.get(ResourceRow, rid) for rid in row.resource_ids]
    res = [r for r in resources if r is not None]
    missing_source = [r.id for r in res if not r.lawful_source.strip()]
    check(
        "lawful_source",
        not missing_source,
        f"missing on {missing_source}" if missing_source else "declared on every resource",
    )
    no_right = [
        r.id
        for r in res
        if not (
            has_right(ctx, r.id, row.provider_id, RightKind.HOLDING)
            or has_right(ctx, r.id, row.provider_id, RightKind.PRODUCT_OPERATION)
        )
    ]
    check(
        "rights_verified",
        not no_right,
        f"no holding or operation right on {no_right}" if no_right else "confirmed on the registry",
    )
    not_live = [f"{r.id} ({r.status})" for r in res if r.status != ResourceStatus.REGISTERED]
    check(
        "resources_live",
        not not_live,
        f"not tradable: {not_live}" if not_live else "all registered, none frozen",
    )
    unconfirmed = [r.id for r in res if r.confirmed_grade is None]
    check(
        "classification_confirmed",
        not unconfirmed,
        f"not confirmed by the operator: {unconfirmed}" if unconfirmed else "confirmed by the operator",
    )
    raw_sensitive = [r.id for r in res if r.sensitive_pii] if row.kind == ProductKind.FILE_DELIVERY else []
    if raw_sensitive and row.terms.get("delivery"):
        # a delivery policy excludes or pseudonymises personal columns unless it licenses them in clear
        licensed = set(row.terms["delivery"].get("licensed_pi") or ())
        raw_sensitive = [
            r.id
            for r in res
            if r.sensitive_pii
            and any(
                isinstance(c, dict) and c.get("sensitive") and c.get("column") in licensed
                for c in (r.pii.get("columns") or [])
            )
        ]
    check(
        "no_raw_sensitive_pi",
        not raw_sensitive,
        f"file delivery would hand over sensitive PI of {raw_sensitive}"
        if raw_sensitive
        else "sensitive PI is never delivered raw",
    )
    from datavalley.market.governance import budget_check

    if (budget := budget_check(row.kind, row.terms)) is not None:
        items.append(budget)  # the ε budget against max uses, with the queries each cost allows
    core = [r.id for r in res if r.effective_grade == Grade.CORE]
    check("not_core_data", not core, f"core data may never be traded: {core}" if core else "no core data")
    important = [r.id for r in res if r.effective_grade == Grade.IMPORTANT]
    if important:
        check(
            "regulator_approval",
            row.regulator_approved,
            f"important data {important}: "
            + ("approved by a regulator" if row.regulator_approved else "needs a regulator's approval"),
        )
    if row.kind == ProductKind.COMPUTE_POOL:
        from datavalley.compute.pools import pool_checklist

        items.extend(pool_checklist(ctx, row))
    if row.market == Market.PRIMARY:
        public = [r for r in res if r.public_data]
        authorised = [
            r.id
            for r in public
            if r.provider_id == row.provider_id
            or ctx.session.scalars(
                select(RightRow.id).where(
                    RightRow.resource_id == r.id,
                    RightRow.holder_id == row.provider_id,
                    RightRow.public_data_authorisation.is_(True),
                    RightRow.status == "active",
                )
            ).first()
            is not None
        ]
        gap = sorted({r.id for r in public} - set(authorised))
        check(
            "public_data_authorised",
            not gap,
            f"no public-data operation authorisation on {gap}" if gap else "operated under authorisation",
        )
    return items


def _party_to_contract_on(ctx: Context, product_id: str) -> bool:
    """Whether the caller is the consumer of a contract on the product (it keeps seeing it once delisted)."""
    from datavalley.market.tables import ContractRow

    me = ctx.principal.participant_id
    if me is None:
        return False
    return (
        ctx.session.scalars(
            select(ContractRow.id).where(ContractRow.product_id == product_id, ContractRow.consumer_id == me)
        ).first()
        is not None
    )


def _get(ctx: Context, product_id: str, *, lock: bool = False) -> ProductRow:
    stmt = select(ProductRow).where(ProductRow.id == product_id)
    if lock:
        stmt = stmt.with_for_update()
    row = ctx.session.scalars(stmt).first()
    if row is None or not (
        row.status == ListingStatus.LISTED
        or row.provider_id == ctx.principal.participant_id
        or oversees(ctx)
        or _party_to_contract_on(ctx, row.id)
    ):
        raise NotFound(f"product {product_id} does not exist", product_id=product_id)
    return row


def get_product(ctx: Context, product_id: str) -> Product:
    return to_product(_get(ctx, product_id))


def submit_product(ctx: Context, product_id: str) -> Product:
    """The provider submits a draft (or rejected) product for review; the checklist runs now."""
    ctx.require(Role.PROVIDER, action="submitting a product")
    require_verified(ctx, "submitting a product")
    row = _get(ctx, product_id, lock=True)
    if row.provider_id != ctx.principal.participant_id:
        raise Forbidden(f"only the provider submits product {product_id}")
    if row.status not in (ListingStatus.DRAFT, ListingStatus.REJECTED):
        raise Conflict(f"product {product_id} is {row.status}; only draft or rejected products are submitted")
    items = compliance_checklist(ctx, row)
    core = next((i for i in items if i["check"] == "not_core_data" and not i["ok"]), None)
    if core is not None:
        raise PolicyViolation(f"product {product_id} is refused outright: {core['detail']}")
    row.checklist = items
    row.status = ListingStatus.SUBMITTED.value
    row.updated_at = ctx.now
    ctx.emit("product.submitted", [row.id], {"id": row.id, "checklist": items})
    return to_product(row)


def approve_regulator(ctx: Context, product_id: str, *, note: str = "") -> Product:
    """A regulator approves trading a product built on important data."""
    ctx.require(Role.REGULATOR, action="approving important-data products")
    row = _get(ctx, product_id, lock=True)
    if row.status != ListingStatus.SUBMITTED:
        raise Conflict(f"product {product_id} is {row.status}; regulators approve submitted products")
    row.regulator_approved = True
    row.regulator_note = note.strip() or None
    row.checklist = compliance_checklist(ctx, row)
    row.updated_at = ctx.now
    ctx.emit(
        "product.regulator_approved", [row.id], {"id": row.id, "note_digest": digest({"note": note.strip()})}
    )
    return to_product(row)


def review_product(ctx: Context, product_id: str, *, approve: bool, note: str = "") -> Product:
    """The operator lists (only if every checklist item passes, re-run now) or rejects with reasons."""
    ctx.require(Role.OPERATOR, action="reviewing listings")
    row = _get(ctx, product_id, lock=True)
    if row.status != ListingStatus.SUBMITTED:
        raise Conflict(f"product {product_id} is {row.status}; only submitted products are reviewed")
    items = compliance_checklist(ctx, row)
    row.checklist = items
    if approve:
        failing = [f"{i['check']}: {i['detail']}" for i in items if not i["ok"]]
        if failing:
            raise Conflict(f"product {product_id} cannot be listed: " + "; ".join(failing), failing=failing)
        row.status = ListingStatus.LISTED.value
    else:
        if not note.strip():
            raise InvalidInput("a rejection needs a reason", field="note")
        row.status = ListingStatus.REJECTED.value
    row.review_note = note.strip() or None
    row.updated_at = ctx.now
    ctx.emit(
        f"product.{row.status}",
        [row.id, row.provider_id],
        {"id": row.id, "status": row.status, "note_digest": digest({"note": row.review_note or ""})},
    )
    return to_product(row)


def delist_product(ctx: Context, product_id: str, *, reason: str = "") -> Product:
    """Stop new orders (provider or operator); running contracts continue."""
    if not ctx.principal.has(Role.OPERATOR):
        ctx.require(Role.PROVIDER, action="delisting a product")
        require_verified(ctx, "delisting a product")
    row = _get(ctx, product_id, lock=True)
    if row.provider_id != ctx.principal.participant_id and not ctx.principal.has(Role.OPERATOR):
        raise Forbidden(f"only the provider or the operator delists product {product_id}")
    if row.status != ListingStatus.LISTED:
        raise Conflict(f"product {product_id} is {row.status}; only listed products are delisted")
    row.status = ListingStatus.DELISTED.value
    row.updated_at = ctx.now
    ctx.emit(
        "product.delisted", [row.id], {"id": row.id, "reason_digest": digest({"reason": reason.strip()})}
    )
    return to_product(row)


def search_products(
    ctx: Context,
    *,
    q: str = "",
    kind: str | None = None,
    market: str | None = None,
    provider: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Product]:
    """Listed products (and your own / all for overseers), full text over name, description and tags."""
    vis = or_(
        ProductRow.status == ListingStatus.LISTED.value,
        ProductRow.provider_id == ctx.principal.participant_id,
    )
    stmt = select(ProductRow).where(ProductRow.id.is_not(None) if oversees(ctx) else vis)
    for term in q.lower().split():
        esc = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(ProductRow.search_text.like(f"%{esc}%", escape="\\"))
    conds = []
    if kind:
        conds.append(ProductRow.kind == kind)
    if market:
        conds.append(ProductRow.market == market)
    if provider:
        conds.append(ProductRow.provider_id == provider)
    if status:
        conds.append(ProductRow.status == status)
    if conds:
        stmt = stmt.where(and_(*conds))
    return paginate(ctx.session, stmt, ProductRow.id, cursor, limit, to_product)
