"""Node side of registration: analyse data where it lives and build what the exchange may see.

The payload holds the schema, row count, content fingerprint, aggregate profile and PI report — no raw
values of personal columns (docs/PROTOCOL.md, "Resource registration").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from datavalley.catalog.analyze import Analysis, analyze
from datavalley.catalog.errors import SourceError
from datavalley.catalog.pii import PIIReport
from datavalley.catalog.sources import Source, SourceKind, open_source
from datavalley.errors import InvalidInput
from datavalley.node.registry import Location


def analyse_source(
    location: str,
    *,
    table: str | None = None,
    format: str | None = None,
    sector: str | None = None,
    progress: Callable[[str], None] | None = None,
    options: dict[str, str] | None = None,
) -> Analysis:
    """Open and analyse a file or database table (raises :class:`InvalidInput` naming the source).

    ``options`` are reader options (CSV ``encoding``/``delimiter``/``quote``, XLSX ``sheet``)."""
    try:
        src = open_source(location, format=format, table=table, options=options)
        return analyze(src, sector=sector, progress=progress)
    except SourceError as exc:
        raise InvalidInput(str(exc), source=exc.location) from exc


def registration_payload(a: Analysis) -> dict[str, Any]:
    """The ``analysis`` object of a registration request."""
    fmt = "sql" if a.source.kind == SourceKind.DATABASE else a.source.format.value
    return {
        "format": fmt,
        "schema": [[c.name, c.type.value] for c in a.schema.columns],
        "row_count": a.row_count,
        "fingerprint": a.fingerprint,
        "profile": a.profile.to_dict(),
        "pii": TypeAdapter(PIIReport).dump_python(a.pii, mode="json"),
    }


def location_of(src: Source, fingerprint: str) -> Location:
    """Where the node keeps a registered source."""
    kind = "database" if src.kind == SourceKind.DATABASE else "file"
    return Location(
        kind, src.url or src.location, src.format.value, src.table, fingerprint, dict(src.options)
    )
