"""``datavalley watermark trace``: score a suspect file against every recipient of the provider's
delivery contracts (:mod:`datavalley.delivery.watermark`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from datavalley.delivery import service
from datavalley.delivery.watermark import Candidate, TraceReport, trace
from datavalley.exchange import Exchange
from datavalley.identity.model import Principal
from datavalley.market.products import get_product

if TYPE_CHECKING:
    from datavalley.delivery.server import DeliveryNode


def trace_file(exchange: Exchange, node: DeliveryNode, caller: Principal, path: Path) -> TraceReport:
    """The provider's trace of ``path``: authorisation (provider role) is in ``trace_candidates``."""
    rows = exchange.read(caller, service.trace_candidates)
    specs: dict[str, tuple[tuple[str, int], ...]] = {}
    candidates = []
    for contract_id, recipient_id, product_id, delivered in rows:
        if product_id not in specs:
            product = exchange.read(Principal.system(), get_product, product_id)
            cols = ((product.terms.get("delivery") or {}).get("watermark") or {}).get("columns") or {}
            specs[product_id] = tuple(sorted((str(c), int(d)) for c, d in cols.items()))
        if specs[product_id]:
            candidates.append(Candidate(contract_id, recipient_id, specs[product_id], delivered))
    return trace(path, node.secret, candidates)
