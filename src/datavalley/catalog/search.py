"""Catalog search: full text and facets over registered resources, respecting visibility.

Visibility is applied in the query itself, so no caller can see, count or facet on what it may not see:
overseers (operator, auditor, regulator) see everything; a participant sees its own resources and the
*published*, live resources of others — never another provider's unpublished resource.

Full text matches every whitespace-separated term (AND) as a case-insensitive substring of the resource's
name, description, tags, column names and sector (``search_text``), which works for Chinese without a
word segmenter. On PostgreSQL a trigram index (pg_trgm) serves these substring matches for terms of three
or more word characters; shorter terms, and Chinese text in a database with the C locale (pg_trgm then
makes no trigrams of it), scan the table, as every substring search does on SQLite. Facets are counted
in one grouped query (or from the first page when it holds every match). Measured costs:
docs/BENCHMARKS.md, "Catalog search".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, and_, bindparam, false, func, or_, select

from datavalley.errors import InvalidInput
from datavalley.exchange import Context
from datavalley.identity.model import Role
from datavalley.rights.model import Grade, Resource, ResourceStatus
from datavalley.rights.registration import oversees, to_resource
from datavalley.rights.tables import ResourceRow
from datavalley.store.pages import Page, paginate

FACETS = ("sector", "grade", "provider", "pii_present")
_FACET_COLUMNS: dict[str, Any] = {
    "sector": ResourceRow.sector,
    "grade": ResourceRow.effective_grade,
    "provider": ResourceRow.provider_id,
    "pii_present": ResourceRow.pii_present,
}


@dataclass(frozen=True)
class SearchResult:
    """A page of matching resources and facet counts over *all* matches (not just this page)."""

    page: Page[Resource]
    total: int
    facets: dict[str, dict[str, int]]


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(pattern: str) -> ColumnElement[bool]:
    """``search_text LIKE pattern`` with the pattern rendered into the SQL text, not bound.

    With a bound pattern PostgreSQL may switch to a generic plan once psycopg prepares the statement
    (its fifth run on a connection), and the generic plan always takes the trigram index. For a pattern
    without trigrams (two characters; Chinese text under the C locale) that index returns every row, and
    the query got about four times slower than a sequential scan. A literal
    pattern is planned with its value every time. SQLAlchemy renders and escapes the literal.
    """
    value = bindparam(None, pattern, type_=String, literal_execute=True)
    return ResourceRow.search_text.like(value, escape="\\")


def visibility(ctx: Context) -> ColumnElement[bool]:
    """The WHERE clause of what the caller may see."""
    p = ctx.principal
    if p.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR):
        return ResourceRow.id.is_not(None)
    live = ResourceRow.status.in_([ResourceStatus.REGISTERED.value, ResourceStatus.FROZEN.value])
    own = ResourceRow.provider_id == p.participant_id if p.participant_id else false()
    return or_(own, and_(ResourceRow.published.is_(True), live))


def search_resources(
    ctx: Context,
    *,
    q: str = "",
    sector: str | None = None,
    grade: str | None = None,
    provider: str | None = None,
    pii_present: bool | None = None,
    tags: list[str] | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 20,
    with_facets: bool = True,
) -> SearchResult:
    """Search the catalog. Raises :class:`InvalidInput` for an unknown grade or status or a too-long query."""
    if len(q) > 200:
        raise InvalidInput("query must be at most 200 characters", field="q")
    conds: list[ColumnElement[bool]] = [visibility(ctx)]
    for term in q.lower().split():
        conds.append(_contains(f"%{_escape_like(term)}%"))
    if sector:
        conds.append(ResourceRow.sector == sector)
    if grade:
        try:
            conds.append(ResourceRow.effective_grade == Grade(grade).value)
        except ValueError:
            raise InvalidInput(f"unknown grade {grade!r}", field="grade") from None
    if provider:
        conds.append(ResourceRow.provider_id == provider)
    if pii_present is not None:
        conds.append(ResourceRow.pii_present.is_(pii_present))
    if status:
        try:
            conds.append(ResourceRow.status == ResourceStatus(status).value)
        except ValueError:
            raise InvalidInput(f"unknown status {status!r}", field="status") from None
    for tag in tags or []:
        # search_text holds each tag as " #tag " (see rights.registration._search_text): whole-tag match.
        conds.append(_contains(f"% #{_escape_like(tag.strip().lower())} %"))
    where = and_(*conds)
    seen: list[tuple[Any, ...]] = []

    def convert(row: ResourceRow) -> Resource:
        seen.append(tuple(getattr(row, c.key) for c in _FACET_COLUMNS.values()))
        return to_resource(row)

    page = paginate(ctx.session, select(ResourceRow).where(where), ResourceRow.id, cursor, limit, convert)
    facets: dict[str, dict[str, int]] = {}
    total = 0
    if with_facets:
        if cursor is None and page.next_cursor is None:
            # The first page holds every match: count the facets from it instead of scanning again.
            # (A selective substring search scans the whole table once for the page already.)
            facets, total = _count_facets((*values, 1) for values in seen)
        elif len(conds) == 1 and oversees(ctx) and ctx.session.get_bind().dialect.name == "sqlite":
            # An overseer browsing everything on SQLite: each facet is a GROUP BY its own indexed column,
            # answered from that index alone (four index scans cost ~40 ms, one table scan ~450 ms at 100k
            # resources). PostgreSQL scans the heap for each of them instead, so it keeps the one query.
            facets = {name: _facet(ctx, column, where) for name, column in _FACET_COLUMNS.items()}
            total = sum(facets["grade"].values())
        else:
            columns = list(_FACET_COLUMNS.values())
            grouped = ctx.session.execute(select(*columns, func.count()).where(where).group_by(*columns))
            facets, total = _count_facets(grouped)
    return SearchResult(page, total, facets)


def _facet(ctx: Context, column: Any, where: ColumnElement[bool]) -> dict[str, int]:
    rows = ctx.session.execute(select(column, func.count()).where(where).group_by(column)).all()
    return {_facet_key(value): int(n) for value, n in rows}


def _facet_key(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _count_facets(groups: Iterable[Sequence[Any]]) -> tuple[dict[str, dict[str, int]], int]:
    """Per-facet value counts and the number of matches from ``(sector, grade, provider, pii, count)``.

    The matches are grouped by all four facet columns together (at most sectors x grades x providers x 2
    groups, far fewer than rows) and summed per facet here: one pass over the table instead of one per
    facet, which matters because a substring search cannot use an index on SQLite.
    """
    facets: dict[str, dict[str, int]] = {name: {} for name in _FACET_COLUMNS}
    total = 0
    for *values, count in groups:
        n = int(count)
        total += n
        for name, value in zip(_FACET_COLUMNS, values, strict=True):
            key = _facet_key(value)
            facets[name][key] = facets[name].get(key, 0) + n
    return facets, total
