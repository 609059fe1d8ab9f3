"""Errors raised by the catalog (node-side registration analysis).

A single class on purpose: it will be re-parented under ``datavalley.errors.InvalidInput`` later, and
keeping one class with one constructor makes that a one-line change.
"""

from __future__ import annotations

__all__ = ["SourceError"]


class SourceError(ValueError):
    """A data source (or an operator-supplied rule set) cannot be used.

    The message always names what was being read (``location``) and why it failed (``reason``), because
    the operator reading it usually has many files and needs to know which one to fix.
    """

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")
