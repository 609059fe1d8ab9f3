"""The node tests reuse the market's parties (a logistics provider, a funded insurer with keys)."""

from market.conftest import insurer, logistics

__all__ = ["insurer", "logistics"]
