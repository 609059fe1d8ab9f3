"""One call for the node-side registration analysis: schema, fingerprint, profile, PI and grade.

The work is one full scan of the source (a single DuckDB aggregate query that computes the fingerprint,
the profile and the PI counts together) plus small reads of the first rows: a 10,000-row sample to
detect text column types and a few thousand values per PI column re-validated with python-stdnum and
phonenumbers. Only metadata, digests and aggregate figures are returned; raw values stay on the node.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from datavalley.catalog._sql import ScanPlan
from datavalley.catalog.classify import DEFAULT_RULES, RuleSet, Suggestion, suggest_grade
from datavalley.catalog.fingerprint import FingerprintPlan, check_duckdb_hash
from datavalley.catalog.pii import PIIPlan, PIIReport, cross_check
from datavalley.catalog.profile import ProfilePlan, ResourceProfile, detect_text_types
from datavalley.catalog.schema import Schema
from datavalley.catalog.sources import Source, SourceConnection, connect, open_source

__all__ = ["Analysis", "analyze"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Analysis:
    """Everything registration needs to know about a source, without any raw personal values."""

    source: Source
    schema: Schema
    row_count: int
    fingerprint: str
    profile: ResourceProfile
    pii: PIIReport
    suggestion: Suggestion


def analyze(
    source: Source | str | os.PathLike[str],
    *,
    sector: str | None = None,
    rules: RuleSet = DEFAULT_RULES,
    progress: Progress | None = None,
    reference_date: date | None = None,
    sample_rows: int = 10_000,
    cross_check_rows: int = 2_000,
    threads: int | None = None,
) -> Analysis:
    """Analyse ``source`` (a :class:`Source` or a file path) in one full scan.

    ``progress`` receives short stage names (``opening``, ``sampling``, ``scanning``,
    ``cross-checking``, ``classifying``, ``done``). ``reference_date`` fixes "today" for the minors'
    age test (default: today).

    Raises:
        SourceError: the source cannot be opened or read, or is empty.
        RuntimeError: the installed DuckDB's hash differs from the ``dvfp1`` reference.
    """
    report = progress or (lambda _stage: None)
    report("opening")
    src = source if isinstance(source, Source) else open_source(source)
    with connect(src, threads=threads) as conn:
        check_duckdb_hash(conn.connection)
        report("sampling")
        detected = _detect_types(conn, sample_rows, reference_date)
        report("scanning")
        schema = conn.schema
        plan = ScanPlan()
        fp = FingerprintPlan(schema, plan)
        pii_plan = PIIPlan(schema, plan, reference_date=reference_date, distinct_sources=fp.cell_hashes)
        prof = ProfilePlan(schema, plan, fp, detected=detected)
        conn.run_plan(plan)
        fingerprint = fp.finish(plan)
        pii = pii_plan.finish(plan, fingerprint.row_count)
        if cross_check_rows:
            report("cross-checking")
            pii = cross_check(conn, pii, sample_rows=cross_check_rows)
        profile = prof.finish(plan, pii=pii)
    report("classifying")
    suggestion = suggest_grade(schema, pii, profile, sector, rules)
    report("done")
    return Analysis(src, schema, fingerprint.row_count, fingerprint.value, profile, pii, suggestion)


def _detect_types(conn: SourceConnection, sample_rows: int, reference_date: date | None) -> dict[str, str]:
    """Text-column types from the first rows, leaving out columns whose values are PI content: their
    validity comes from the PI validators and would otherwise cost an extra per-row cast."""
    if not sample_rows:
        return {}
    plan = ScanPlan()
    sample_pii = PIIPlan(conn.schema, plan, reference_date=reference_date)
    rows = plan.add("count(*)")
    sample = f"(SELECT * FROM {conn.view} LIMIT {int(sample_rows)})"
    conn.run_plan(plan, view=sample)
    on_sample = sample_pii.finish(plan, int(plan[rows]))
    content = {c.column for c in on_sample.columns if any(d.method == "content" for d in c.detections)}
    return {k: v for k, v in detect_text_types(conn, sample_rows=sample_rows).items() if k not in content}
