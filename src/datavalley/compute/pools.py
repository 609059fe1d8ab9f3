"""Compute pools: registered by a provider on a cluster, listed as ``compute_pool`` products.

A pool is a product like any other: ``register_pool`` creates the pool and its draft product (price
``per_core_hour``, metered in core-seconds), after which the market's own submit → review → list,
contracts, escrow, metering (``record_use``), settlement and receipts apply unchanged. The market calls
two hooks here: :func:`check_pool_product` when the product is created and :func:`pool_checklist` for the
listing checklist (cluster exists, province in the cluster, PUE within the hub's target, capacity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from datavalley.compute import topology
from datavalley.compute.scheduler import PoolSpec
from datavalley.compute.tables import ComputePoolRow
from datavalley.errors import Forbidden, InvalidInput, NotFound
from datavalley.exchange import Context
from datavalley.identity.model import Role
from datavalley.market.tables import ProductRow
from datavalley.rights.registration import oversees, require_verified
from datavalley.store.base import new_id
from datavalley.store.pages import Page, paginate

MAX_CORES = 1_000_000
MAX_PRICE = 1_000_000  # fen per core-hour


@dataclass(frozen=True)
class Pool:
    id: str
    provider_id: str
    product_id: str | None
    name: str
    cluster: str
    hub: str
    province: str
    west: bool
    cores: int
    memory_gb: int
    gpus: int
    pue: float
    green_share: float
    watts_per_core: float
    price: int
    windows: tuple[tuple[int, int], ...]
    grid_factor: float
    status: str
    topology_version: str

    def spec(self) -> PoolSpec:
        return PoolSpec(
            self.id,
            self.cluster,
            self.province,
            self.cores,
            self.price,
            self.pue,
            self.green_share,
            self.watts_per_core,
            self.windows,
            float(self.memory_gb),
        )

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["windows"] = [list(w) for w in self.windows]
        return d


def to_pool(r: ComputePoolRow) -> Pool:
    c = topology.CLUSTERS[r.cluster]
    return Pool(
        r.id,
        r.provider_id,
        r.product_id,
        r.name,
        r.cluster,
        c.hub,
        r.province,
        c.west,
        r.cores,
        r.memory_gb,
        r.gpus,
        r.pue,
        r.green_share,
        r.watts_per_core,
        r.price,
        tuple((int(a), int(b)) for a, b in r.windows),
        topology.PROVINCES[r.province].grid_factor,
        r.status,
        r.topology_version,
    )


def _int(v: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InvalidInput(f"{field} must be an integer between {lo} and {hi}", field=field)
    return v


def _num(v: Any, field: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= float(v) <= hi:
        raise InvalidInput(f"{field} must be a number between {lo:g} and {hi:g}", field=field)
    return float(v)


def _windows(v: Any) -> list[list[int]]:
    if v is None:
        return []
    if not isinstance(v, list) or len(v) > 24:
        raise InvalidInput("windows must be a list of [from_hour, to_hour] pairs", field="windows")
    out = []
    for w in v:
        if (
            not isinstance(w, list | tuple)
            or len(w) != 2
            or not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= 23 for h in w)
            or w[0] == w[1]
        ):
            raise InvalidInput("each window is [from_hour, to_hour], hours 0–23, not equal", field="windows")
        out.append([int(w[0]), int(w[1])])
    return out


def register_pool(
    ctx: Context,
    *,
    name: str,
    cluster: str,
    cores: int,
    price: int,
    province: str | None = None,
    memory_gb: int = 4,
    gpus: int = 0,
    pue: float | None = None,
    green_share: float = 0.0,
    watts_per_core: float = topology.WATTS_PER_CORE,
    windows: list[list[int]] | None = None,
    description: str = "",
    max_core_hours: int | None = None,
) -> Pool:
    """A provider registers a pool on a cluster; its compute-pool product is created as a draft."""
    ctx.require(Role.PROVIDER, action="registering a compute pool")
    require_verified(ctx, "registering a compute pool")
    me = ctx.principal.participant_id
    assert me is not None
    name = (name or "").strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("name must be 1 to 200 characters", field="name")
    c = topology.CLUSTERS.get(cluster) if isinstance(cluster, str) else None
    if c is None:
        raise InvalidInput(f"cluster must be one of {', '.join(topology.CLUSTERS)}", field="cluster")
    prov = province or c.provinces[0]
    if prov not in c.provinces:
        raise InvalidInput(
            f"cluster {cluster} lies in {', '.join(c.provinces)}, not {prov}", field="province"
        )
    row = ComputePoolRow(
        id=new_id("pool"),
        provider_id=me,
        product_id=None,
        name=name,
        cluster=cluster,
        province=prov,
        cores=_int(cores, "cores", 1, MAX_CORES),
        memory_gb=_int(memory_gb, "memory_gb", 1, 10**7),
        gpus=_int(gpus, "gpus", 0, 10**6),
        pue=_num(c.pue_target if pue is None else pue, "pue", 1.0, 3.0),
        green_share=_num(green_share, "green_share", 0.0, 1.0),
        watts_per_core=_num(watts_per_core, "watts_per_core", 0.1, 1000.0),
        price=_int(price, "price", 1, MAX_PRICE),
        windows=_windows(windows),
        status="active",
        topology_version=topology.VERSION,
        created_at=ctx.now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    ctx.emit(
        "compute.pool_registered",
        [row.id, me],
        {k: getattr(row, k) for k in ("id", "cluster", "province", "cores", "pue", "green_share", "price")}
        | {"topology": topology.VERSION},
    )
    from datavalley.market.products import create_product

    terms: dict[str, Any] = {"purposes": ["compute"], "regions": ["CN"], "pool_id": row.id}
    if max_core_hours is not None:
        terms["max_quantity"] = _int(max_core_hours, "max_core_hours", 1, 10**9) * 3600
    product = create_product(
        ctx,
        name=name,
        description=description or f"{row.cores} cores in the {c.name} cluster ({prov})",
        kind="compute_pool",
        resource_ids=[],
        price={"model": "per_core_hour", "amount": row.price},
        terms=terms,
        tags=["compute", cluster, c.hub, "west" if c.west else "east"],
    )
    row.product_id = product.id
    return to_pool(row)


def check_pool_product(ctx: Context, terms: dict[str, Any], resource_ids: Any, provider: str) -> list[Any]:
    """Market hook: a compute-pool product rests on a pool of its provider, and on no data resource."""
    if resource_ids:
        raise InvalidInput("a compute pool product rests on no data resources", field="resource_ids")
    row = ctx.session.get(ComputePoolRow, terms["pool_id"])
    if row is None or row.provider_id != provider:
        raise Forbidden(f"participant {provider} has no compute pool {terms['pool_id']}")
    if row.product_id is not None:
        raise InvalidInput(f"pool {row.id} is already product {row.product_id}", field="terms.pool_id")
    return []


def pool_checklist(ctx: Context, product: ProductRow) -> list[dict[str, Any]]:
    """Market hook: the compute-specific listing checks."""
    row = ctx.session.get(ComputePoolRow, product.terms.get("pool_id"))
    items: list[dict[str, Any]] = []
    ok = row is not None and row.provider_id == product.provider_id and row.status == "active"
    items.append(
        {"check": "pool_registered", "ok": ok, "detail": "active pool of the provider" if ok else "no"}
    )
    if row is None:
        return items
    c = topology.CLUSTERS[row.cluster]
    items.append(
        {
            "check": "pue_target",
            "ok": row.pue <= c.pue_target,
            "detail": f"PUE {row.pue:g} vs the {'western' if c.west else 'eastern'} hub target "
            f"≤ {c.pue_target:g}",
        }
    )
    items.append(
        {
            "check": "province_in_cluster",
            "ok": row.province in c.provinces,
            "detail": f"{row.province} in {c.id}",
        }
    )
    return items


def _get(ctx: Context, pool_id: str) -> ComputePoolRow:
    row = ctx.session.get(ComputePoolRow, pool_id)
    if row is None:
        raise NotFound(f"compute pool {pool_id} does not exist", pool_id=pool_id)
    product = ctx.session.get(ProductRow, row.product_id) if row.product_id else None
    visible = (
        row.provider_id == ctx.principal.participant_id
        or oversees(ctx)
        or (product is not None and product.status == "listed")
    )
    if not visible:
        raise NotFound(f"compute pool {pool_id} does not exist", pool_id=pool_id)
    return row


def get_pool(ctx: Context, pool_id: str) -> Pool:
    return to_pool(_get(ctx, pool_id))


def list_pools(
    ctx: Context, *, cluster: str | None = None, limit: int = 50, cursor: str | None = None
) -> Page[Pool]:
    """Pools whose product is listed, plus your own (all for overseers)."""
    stmt = select(ComputePoolRow).outerjoin(ProductRow, ProductRow.id == ComputePoolRow.product_id)
    if not oversees(ctx):
        stmt = stmt.where(
            (ProductRow.status == "listed") | (ComputePoolRow.provider_id == ctx.principal.participant_id)
        )
    if cluster:
        stmt = stmt.where(ComputePoolRow.cluster == cluster)
    return paginate(ctx.session, stmt, ComputePoolRow.id, cursor, limit, to_pool)
