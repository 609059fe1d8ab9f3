"""Node-side registration analysis: open a provider's data source and describe it without moving it.

Only metadata, digests and aggregate profiles leave the node: the ``dvfp1`` content fingerprint, the
schema, a quality profile, personal-information findings and a suggested GB/T 43697-2024 grade.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names load on first use (PEP 562): the exchange imports one submodule (e.g. the search index) without
# paying for DuckDB analysis, PI detection and profiling.
_WHERE = {
    "Analysis": "analyze",
    "analyze": "analyze",
    "DEFAULT_RULES": "classify",
    "Grade": "classify",
    "Rule": "classify",
    "RuleSet": "classify",
    "Suggestion": "classify",
    "suggest_grade": "classify",
    "SourceError": "errors",
    "Fingerprint": "fingerprint",
    "fingerprint": "fingerprint",
    "reference_fingerprint": "fingerprint",
    "ColumnPII": "pii",
    "CrossCheck": "pii",
    "Detection": "pii",
    "PIIKind": "pii",
    "PIIReport": "pii",
    "scan_pii": "pii",
    "ColumnProfile": "profile",
    "ResourceProfile": "profile",
    "profile": "profile",
    "CanonicalType": "schema",
    "Column": "schema",
    "Schema": "schema",
    "Source": "sources",
    "SourceConnection": "sources",
    "SourceFormat": "sources",
    "SourceKind": "sources",
    "connect": "sources",
    "open_source": "sources",
}

if TYPE_CHECKING:
    from datavalley.catalog.analyze import Analysis, analyze
    from datavalley.catalog.classify import DEFAULT_RULES, Grade, Rule, RuleSet, Suggestion, suggest_grade
    from datavalley.catalog.errors import SourceError
    from datavalley.catalog.fingerprint import Fingerprint, fingerprint, reference_fingerprint
    from datavalley.catalog.pii import ColumnPII, CrossCheck, Detection, PIIKind, PIIReport, scan_pii
    from datavalley.catalog.profile import ColumnProfile, ResourceProfile, profile
    from datavalley.catalog.schema import CanonicalType, Column, Schema
    from datavalley.catalog.sources import (
        Source,
        SourceConnection,
        SourceFormat,
        SourceKind,
        connect,
        open_source,
    )


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'datavalley.catalog' has no attribute {name!r}")
    return getattr(importlib.import_module(f"datavalley.catalog.{module}"), name)


__all__ = [
    "DEFAULT_RULES",
    "Analysis",
    "CanonicalType",
    "Column",
    "ColumnPII",
    "ColumnProfile",
    "CrossCheck",
    "Detection",
    "Fingerprint",
    "Grade",
    "PIIKind",
    "PIIReport",
    "ResourceProfile",
    "Rule",
    "RuleSet",
    "Schema",
    "Source",
    "SourceConnection",
    "SourceError",
    "SourceFormat",
    "SourceKind",
    "Suggestion",
    "analyze",
    "connect",
    "fingerprint",
    "open_source",
    "profile",
    "reference_fingerprint",
    "scan_pii",
    "suggest_grade",
]
