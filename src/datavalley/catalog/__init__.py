"""Node-side registration analysis: open a provider's data source and describe it without moving it.

Only metadata, digests and aggregate profiles leave the node: the ``dvfp1`` content fingerprint, the
schema, a quality profile, personal-information findings and a suggested GB/T 43697-2024 grade.
"""

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
