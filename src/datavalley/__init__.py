"""datavalley: an open-source data exchange.

The exchange (control plane) registers participants, data resources and rights, runs the market and keeps
a verifiable RFC 9162 ledger; the node (data plane) sits with a provider's data and releases only what a
contract permits. See docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
