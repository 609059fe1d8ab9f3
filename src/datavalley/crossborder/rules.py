"""The versioned rule data (``data/rules-<version>.json``) as one typed, frozen value.

The files are data, not code: a new list or a changed threshold is a new file with a new version, and every
decision records the version it was made under. :func:`load` validates the file's shape; a malformed file
is an :class:`~datavalley.errors.IntegrityError` (shipped evidence that does not hold).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from datavalley.errors import IntegrityError, InvalidInput

FORMAT = "datavalley-crossborder-rules/v1"
CURRENT = "2024.1"


@dataclass(frozen=True)
class FtzList:
    """One free-trade-zone negative list (CAC 2024 art. 6).

    ``scope`` is ``categories`` (the list names data categories across all sectors) or ``sectors`` (it
    covers named sectors). ``fields_encoded`` is False when the list's field-level items are not encoded
    here: then *all* data of a covered sector counts as listed (conservative), and the exemption only
    applies to data in covered sectors whose categories are all outside ``categories``.
    """

    zone: str
    name: str
    published: str
    source: str
    scope: str
    sectors: tuple[str, ...]
    categories: tuple[str, ...]
    fields_encoded: bool
    ciio_excluded: bool

    def covers_sector(self, sector: str) -> bool:
        return "*" in self.sectors or sector in self.sectors


@dataclass(frozen=True)
class Adequacy:
    country: str
    decision: str
    date: str
    partial: str | None


@dataclass(frozen=True)
class RuleSet:
    version: str
    exempt_below: int
    standard_contract_from: int
    security_assessment_from: int
    sensitive_security_assessment_from: int
    assessment_validity_years: int
    renewal_window_working_days: int
    tz_offset_hours: int
    exemptions: dict[str, dict[str, str]]
    cn_articles: dict[str, str]
    ftz: tuple[FtzList, ...]
    eea: frozenset[str]
    adequacy: tuple[Adequacy, ...]
    scc_modules: dict[str, str]
    gdpr_articles: dict[str, str]
    sources: dict[str, dict[str, str]]

    def zone(self, name: str) -> FtzList | None:
        return next((z for z in self.ftz if z.zone == name), None)

    def adequate(self, country: str, on: str) -> Adequacy | None:
        """The adequacy decision covering ``country`` on date ``on`` (ISO), if any."""
        return next((a for a in self.adequacy if a.country == country and (not on or a.date <= on)), None)

    def exemption_article(self, basis: str) -> str:
        return self.exemptions[basis]["article"]


def _req(d: dict[str, Any], key: str, path: str) -> Any:
    if key not in d:
        raise IntegrityError(f"rule file {path}: missing {key!r}")
    return d[key]


def parse(data: dict[str, Any], path: str = "rules") -> RuleSet:
    """Validate and type a rule document."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise IntegrityError(f"rule file {path}: format must be {FORMAT!r}")
    try:
        cn = _req(data, "cn", path)
        th = _req(cn, "thresholds", path)
        gdpr = _req(data, "gdpr", path)
        ftz = tuple(
            FtzList(
                zone=str(z["zone"]),
                name=str(z["name"]),
                published=str(z["published"]),
                source=str(z["source"]),
                scope=str(z["scope"]),
                sectors=tuple(str(s) for s in z.get("sectors", ())),
                categories=tuple(str(c) for c in z.get("categories", ())),
                fields_encoded=bool(z.get("fields_encoded", False)),
                ciio_excluded=bool(z.get("ciio_excluded", True)),
            )
            for z in _req(data, "ftz_lists", path)
        )
        rs = RuleSet(
            version=str(_req(data, "version", path)),
            exempt_below=int(th["exempt_below"]),
            standard_contract_from=int(th["standard_contract_from"]),
            security_assessment_from=int(th["security_assessment_from"]),
            sensitive_security_assessment_from=int(th["sensitive_security_assessment_from"]),
            assessment_validity_years=int(cn["assessment_validity_years"]),
            renewal_window_working_days=int(cn["renewal_window_working_days"]),
            tz_offset_hours=int(cn["count_timezone_offset_hours"]),
            exemptions={k: dict(v) for k, v in cn["exemptions"].items()},
            cn_articles=dict(cn["articles"]),
            ftz=ftz,
            eea=frozenset(gdpr["eea"]),
            adequacy=tuple(
                Adequacy(str(a["country"]), str(a["decision"]), str(a["date"]), a.get("partial"))
                for a in gdpr["adequacy"]
            ),
            scc_modules=dict(gdpr["scc_modules"]),
            gdpr_articles=dict(gdpr["articles"]),
            sources={k: dict(v) for k, v in data.get("sources", {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"rule file {path}: malformed ({exc!r})") from None
    if not (rs.exempt_below <= rs.standard_contract_from < rs.security_assessment_from):
        raise IntegrityError(f"rule file {path}: thresholds are not ordered")
    return rs


@cache
def load(version: str = CURRENT) -> RuleSet:
    """The shipped rule set ``version`` (raises :class:`InvalidInput` for an unknown version)."""
    name = f"rules-{version}.json"
    ref = resources.files("datavalley.crossborder").joinpath("data", name)
    if not ref.is_file():
        raise InvalidInput(f"no cross-border rule set {version!r} is shipped", field="rules_version")
    return parse(json.loads(ref.read_text("utf-8")), name)


def raw(version: str = CURRENT) -> dict[str, Any]:
    """The rule document as shipped (for ``datavalley crossborder rules`` and the docs)."""
    load(version)
    ref = resources.files("datavalley.crossborder").joinpath("data", f"rules-{version}.json")
    data: dict[str, Any] = json.loads(ref.read_text("utf-8"))
    return data
