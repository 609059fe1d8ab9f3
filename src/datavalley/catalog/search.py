"""Catalog search: full text and facets over registered resources, respecting visibility.

Visibility is applied in the query itself, so no caller can see, count or facet on what it may not see:
overseers (operator, auditor, regulator) see everything; a participant sees its own resources and the
*published*, live resources of others — never another provider's unpublished resource.

Full text matches every whitespace-separated term (AND) as a case-insensitive substring of the resource's
name, description, tags, column names and sector, which works for Chinese without a word segmenter.

Search never reads ``resources`` (whose rows carry kilobytes of profile and PI JSON) except for the page
it returns. It filters, matches and pages on ``resource_search`` (one narrow row per resource) and counts
facets either from ``resource_facets`` (counts per combination of facet values: a browse or filters
without terms) or over the matches of the terms in the same statement as the page. Terms are matched on
``search_key`` (``rights.tables.search_key``: non-ASCII characters spelt in ASCII, so that trigram
indexes serve two-character Chinese words), through the FTS5 trigram table ``resource_search_fts`` on
SQLite and the pg_trgm index ``ix_resource_search_key_trgm`` on PostgreSQL (migration 0003). A term
shorter than three characters after spelling (one or two ASCII characters) scans ``resource_search``.
Both tables are kept in step by ``rights.registration.sync_search``. Measured costs: docs/BENCHMARKS.md,
"Registration", catalog search.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    column,
    false,
    func,
    literal,
    or_,
    select,
    table,
    true,
    union_all,
)

from datavalley.errors import InvalidInput
from datavalley.exchange import Context
from datavalley.identity.model import Role
from datavalley.rights.model import Grade, Resource, ResourceStatus
from datavalley.rights.registration import to_resource
from datavalley.rights.tables import ResourceFacetRow, ResourceRow, ResourceSearchRow, search_key
from datavalley.store.pages import MAX_LIMIT, Page, decode_cursor, encode_cursor, paginate

FACETS = ("sector", "grade", "provider", "pii_present")
_LIVE = (ResourceStatus.REGISTERED.value, ResourceStatus.FROZEN.value)
_S = ResourceSearchRow
# The SQLite full-text index over resource_search.search_key (rowid = resource_search.seq); the column of
# the table's own name is FTS5's handle for MATCH.
_FTS = table("resource_search_fts", column("rowid"), column("resource_search_fts"))

Indexed = type[ResourceSearchRow] | type[ResourceFacetRow]


@dataclass(frozen=True)
class SearchResult:
    """A page of matching resources and facet counts over *all* matches (not just this page)."""

    page: Page[Resource]
    total: int
    facets: dict[str, dict[str, int]]


def _facet_columns(t: Indexed) -> list[Any]:
    """The columns behind :data:`FACETS`, in that order."""
    return [t.sector, t.effective_grade, t.provider_id, t.pii_present]


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(needle: str) -> ColumnElement[bool]:
    """PostgreSQL: ``search_key LIKE '%needle%'`` with the pattern rendered into the SQL text, not bound.

    With a bound pattern PostgreSQL may switch to a generic plan once psycopg prepares the statement
    (its fifth run on a connection), and the generic plan always takes the trigram index. For a pattern
    without trigrams (one or two ASCII characters) that index returns every row, and the query got about
    four times slower than a sequential scan. A literal pattern is planned with its value every time.
    SQLAlchemy renders and escapes the literal. LIKE is case-sensitive on PostgreSQL, as keys need.
    """
    value = bindparam(None, f"%{_escape_like(needle)}%", type_=String, literal_execute=True)
    return _S.search_key.like(value, escape="\\")


def _fts_phrase(needle: str) -> str:
    return '"' + needle.replace('"', '""') + '"'


def _text_matches(ctx: Context, needles: Sequence[str]) -> list[ColumnElement[bool]]:
    """Conditions on ``resource_search`` for rows whose key contains every needle (exact substrings)."""
    if not needles:
        return []
    if ctx.session.get_bind().dialect.name != "sqlite":
        return [_contains(n) for n in needles]
    # The trigram tokenizer (case-sensitive, with positions) answers a quoted phrase of three or more
    # characters exactly: the rows holding it as a substring. Shorter needles have no trigram: instr().
    indexed = [n for n in needles if len(n) >= 3]
    conds: list[ColumnElement[bool]] = [func.instr(_S.search_key, n) > 0 for n in needles if len(n) < 3]
    if indexed:
        phrases = " AND ".join(_fts_phrase(n) for n in indexed)
        conds.append(_S.seq.in_(select(_FTS.c.rowid).where(_FTS.c.resource_search_fts.match(phrases))))
    return conds


def visibility(ctx: Context, t: Indexed = ResourceSearchRow) -> ColumnElement[bool]:
    """The WHERE clause of what the caller may see, on ``resource_search`` or ``resource_facets``."""
    p = ctx.principal
    if p.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR):
        return true()
    own = t.provider_id == p.participant_id if p.participant_id else false()
    return or_(own, and_(t.published.is_(True), t.status.in_(_LIVE)))


def _filters(
    t: Indexed,
    sector: str | None,
    grade: str | None,
    provider: str | None,
    pii_present: bool | None,
    status: str | None,
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if sector:
        conds.append(t.sector == sector)
    if grade:
        try:
            conds.append(t.effective_grade == Grade(grade).value)
        except ValueError:
            raise InvalidInput(f"unknown grade {grade!r}", field="grade") from None
    if provider:
        conds.append(t.provider_id == provider)
    if pii_present is not None:
        conds.append(t.pii_present.is_(pii_present))
    if status:
        try:
            conds.append(t.status == ResourceStatus(status).value)
        except ValueError:
            raise InvalidInput(f"unknown status {status!r}", field="status") from None
    return conds


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
    """Search the catalog. Raises :class:`InvalidInput` for an unknown grade or status, a too-long query,
    a limit out of range or a cursor this server did not issue."""
    if len(q) > 200:
        raise InvalidInput("query must be at most 200 characters", field="q")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, got {limit}", field="limit")
    after = decode_cursor(cursor) if cursor else None
    filters = (sector, grade, provider, pii_present, status)
    needles = [search_key(term) for term in q.lower().split()]
    # search_text holds each tag as " #tag " (see rights.registration._search_text): whole-tag match.
    needles += [search_key(f" #{tag.strip().lower()} ") for tag in tags or []]
    where = and_(visibility(ctx), *_filters(_S, *filters), *_text_matches(ctx, needles))
    if needles and with_facets:
        ids, facets, total = _page_and_facets(ctx, where, after, limit)
        more = len(ids) > limit
        ids = ids[:limit]
        page = Page(_resources(ctx, ids), encode_cursor(ids[-1]) if more else None)
        return SearchResult(page, total, facets)
    narrow = paginate(ctx.session, select(_S).where(where), _S.id, cursor, limit, lambda row: row)
    page = Page(_resources(ctx, [row.id for row in narrow.items]), narrow.next_cursor)
    if not with_facets:
        return SearchResult(page, 0, {})
    # No terms: count from resource_facets, whose rows each stand for every resource of one combination
    # (about a fifth as many rows as resources in the benchmark's catalog).
    f = ResourceFacetRow
    combinations = and_(visibility(ctx, f), *_filters(f, *filters))
    parts = [
        select(literal(name, String), _facet_value(name, col), func.sum(f.resource_count))
        .where(combinations)
        .group_by(col)
        for name, col in zip(FACETS, _facet_columns(f), strict=True)
    ]
    facets = _facets(ctx.session.execute(union_all(*parts)))
    return SearchResult(page, sum(facets["grade"].values()), facets)


def _page_and_facets(
    ctx: Context, where: ColumnElement[bool], after: str | None, limit: int
) -> tuple[list[str], dict[str, dict[str, int]], int]:
    """The IDs of the page (up to ``limit + 1``) and the facet counts over all matches, in one statement.

    The matches are found once (a common table expression used five times is materialized by both
    SQLite and PostgreSQL) and counted per facet, which costs a third less than finding them twice.
    """
    matches = select(_S.id, *_facet_columns(_S)).where(where).cte("matches")
    page = select(matches.c.id).order_by(matches.c.id).limit(limit + 1)
    if after is not None:
        page = page.where(matches.c.id > after)
    ids = page.subquery()
    parts: list[Select[Any]] = [select(literal("", String), ids.c.id, literal(0, Integer))]
    for name, col in zip(FACETS, list(matches.c)[1:], strict=True):
        parts.append(select(literal(name, String), _facet_value(name, col), func.count()).group_by(col))
    rows = ctx.session.execute(union_all(*parts)).all()
    facets = _facets(row for row in rows if row[0])
    page_ids = sorted(str(row[1]) for row in rows if not row[0])
    return page_ids, facets, sum(facets["grade"].values())


def _resources(ctx: Context, ids: list[str]) -> list[Resource]:
    """The full resources of one page, in the order of ``ids``."""
    if not ids:
        return []
    rows = ctx.session.execute(select(ResourceRow).where(ResourceRow.id.in_(ids))).scalars()
    by_id = {row.id: row for row in rows}
    return [to_resource(by_id[i]) for i in ids]


def _facet_value(name: str, col: Any) -> Any:
    """A facet column as text, so the facets' counts can be one UNION (booleans as 'true' / 'false')."""
    return case((col.is_(True), "true"), else_="false") if name == "pii_present" else col


def _facets(rows: Iterable[Sequence[Any]]) -> dict[str, dict[str, int]]:
    """``{facet: {value: count}}`` from ``(facet, value, count)`` rows; every facet present, maybe empty."""
    facets: dict[str, dict[str, int]] = {name: {} for name in FACETS}
    for name, value, n in rows:
        facets[name][str(value)] = int(n)
    return facets
