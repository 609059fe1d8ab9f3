"""The ledger privacy tests reuse the market's parties and listed product."""

from market.conftest import analytics, insurer, logistics, trip_resource

__all__ = ["analytics", "insurer", "logistics", "trip_resource"]
