"""The complete metadata: importing this module registers every domain's tables (for Alembic)."""

from __future__ import annotations

import datavalley.compute.tables
import datavalley.crossborder.tables
import datavalley.delivery.tables
import datavalley.events
import datavalley.idempotency
import datavalley.identity.tables
import datavalley.ledger.tables
import datavalley.market.tables
import datavalley.rights.tables  # noqa: F401
from datavalley.store.base import Base

metadata = Base.metadata
