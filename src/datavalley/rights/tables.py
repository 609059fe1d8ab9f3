"""Registration and rights tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from datavalley.store.base import Base, BigId, UTCDateTime


class ResourceRow(Base):
    __tablename__ = "resources"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON)
    format: Mapped[str] = mapped_column(String(32))
    schema: Mapped[list[list[str]]] = mapped_column(JSON)
    row_count: Mapped[int] = mapped_column(BigInteger)
    fingerprint: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    pii: Mapped[dict[str, Any]] = mapped_column(JSON)
    pii_present: Mapped[bool] = mapped_column(Boolean, index=True)
    sensitive_pii: Mapped[bool] = mapped_column(Boolean)
    estimated_individuals: Mapped[int] = mapped_column(BigInteger)
    sector: Mapped[str] = mapped_column(String(64), index=True)
    suggested_grade: Mapped[str] = mapped_column(String(16))
    grade_reasons: Mapped[list[str]] = mapped_column(JSON)
    declared_grade: Mapped[str] = mapped_column(String(16))
    confirmed_grade: Mapped[str | None] = mapped_column(String(16), nullable=True)
    confirmed_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    effective_grade: Mapped[str] = mapped_column(String(16), index=True)
    public_data: Mapped[bool] = mapped_column(Boolean)
    published: Mapped[bool] = mapped_column(Boolean, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    lawful_source: Mapped[str] = mapped_column(Text)
    # Lower-cased text the catalog searches: name, description, tags, column names, sector. Search reads
    # its indexed form, ResourceSearchRow.search_key.
    search_text: Mapped[str] = mapped_column(Text)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


_HEX = "ABCDEFGHIJKLMNOP"  # sixteen upper-case letters as hexadecimal digits


def _spell(char: str) -> str:
    code = ord(char)
    if code < 0x80:
        return "X" if char == "#" else char
    if code < 0x10000:
        return "Z" + "".join(_HEX[(code >> shift) & 15] for shift in (12, 8, 4, 0))
    return "Y" + "".join(_HEX[(code >> shift) & 15] for shift in (20, 16, 12, 8, 4, 0))


def search_key(text: str) -> str:
    """The indexed form of search text: ``t in s`` exactly when ``search_key(t) in search_key(s)``.

    Trigram indexes serve substring search, but not as-is for Chinese: most Chinese words are two
    characters, fewer than a trigram, and PostgreSQL's pg_trgm makes no trigrams of non-ASCII text at all
    under the C locale. So the text is lower-cased and every non-ASCII character is spelt in upper-case
    ASCII letters, which lower-cased text never contains: ``Z`` and four letters ``A``-``P`` (the code
    point in hexadecimal) in the basic multilingual plane, ``Y`` and six beyond it ("深" -> ``ZGNPB``).
    ``#``, which marks tags, becomes ``X``, so that pg_trgm (which skips punctuation) indexes tags too.
    Each spelling starts with a letter that occurs nowhere else (``X``, ``Y``, ``Z``; the digits are
    ``A``-``P``), so a match can never start inside one: substring matching on keys is exact.
    """
    text = text.lower()
    return text.replace("#", "X") if text.isascii() else "".join(map(_spell, text))


class ResourceSearchRow(Base):
    """The catalog's search index: one narrow row per resource, kept in step by ``rights.registration``.

    Search filters, matches, pages and counts here instead of on ``resources``, whose rows carry kilobytes
    of profile and PI JSON. The columns mirror the resource's; ``search_key`` is
    :func:`search_key` of ``resources.search_text``. Full text is indexed outside the model (migration
    0003): by the SQLite FTS5 table ``resource_search_fts`` (trigram tokenizer, keyed by ``seq``), and by
    the pg_trgm GIN index ``ix_resource_search_key_trgm`` on PostgreSQL.
    """

    __tablename__ = "resource_search"

    # An integer key because SQLite's full-text index refers to rows by integer (a rowid alias, stable).
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(ForeignKey("resources.id"), unique=True)
    provider_id: Mapped[str] = mapped_column(String(40), index=True)
    published: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))
    sector: Mapped[str] = mapped_column(String(64))
    effective_grade: Mapped[str] = mapped_column(String(16))
    pii_present: Mapped[bool] = mapped_column(Boolean)
    search_key: Mapped[str] = mapped_column(Text)


class ResourceFacetRow(Base):
    """How many resources share each combination of the columns search filters and counts by.

    A plain browse or a filter without search terms counts its facets from these few rows instead of
    visiting every matching resource. ``provider_id``, ``published`` and ``status`` decide visibility.
    Kept in step with ``resource_search`` by ``rights.registration``; a row is deleted when it reaches 0.
    """

    __tablename__ = "resource_facets"

    provider_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    published: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    effective_grade: Mapped[str] = mapped_column(String(16), primary_key=True)
    pii_present: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    resource_count: Mapped[int] = mapped_column(Integer)


class ResourceVersionRow(Base):
    """Every registered content version of a resource (first registration and each change)."""

    __tablename__ = "resource_versions"

    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    fingerprint: Mapped[str] = mapped_column(String(100))
    row_count: Mapped[int] = mapped_column(BigInteger)
    schema: Mapped[list[list[str]]] = mapped_column(JSON)
    event_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RightRow(Base):
    __tablename__ = "rights"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    holder_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    grantor_id: Mapped[str | None] = mapped_column(ForeignKey("participants.id"), nullable=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("rights.id"), nullable=True, index=True)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    territories: Mapped[list[str]] = mapped_column(JSON)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sublicensable: Mapped[bool] = mapped_column(Boolean)
    public_data_authorisation: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ObjectionRow(Base):
    __tablename__ = "objections"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id"), index=True)
    objector_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)


class CertificateRow(Base):
    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    # The signed document once issued (receipts exist only after the event is sequenced).
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A version has one certificate per holder: a holding transfer issues a new one (migration 0004).
    holder_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # valid | superseded | cancelled | revoked, and the event (ledger entry) that set it.
    status: Mapped[str] = mapped_column(String(16), server_default="valid")
    status_event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RuleSetRow(Base):
    """Versions of the operator-editable classification rule set (newest wins)."""

    __tablename__ = "classification_rules"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
