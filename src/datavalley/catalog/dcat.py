"""The exchange's public catalog as DCAT-AP 3.0 JSON-LD.

:func:`catalog_to_jsonld` builds a plain JSON-LD document (a ``dict`` ready for ``json.dumps``) from the
registry's :class:`~datavalley.rights.model.Resource` values. The ``@context`` is inline, so no JSON-LD
processor ever fetches a remote context (consumers may be offline). This module builds dicts only; the
tests validate the output against the official DCAT-AP 3.0.0 SHACL shapes (SEMICeu/DCAT-AP
``releases/3.0.0/shacl/dcat-ap-SHACL.ttl``) with pyshacl, without RDFS inference.

What is listed
--------------
Only resources that are *published* and whose status is ``registered``. Frozen (an objection is open),
cancelled and revoked resources, and unpublished ones, are left out even if the caller passes them.

What a dataset says
-------------------
Name, description, tags (``dcat:keyword``), provider (``dct:publisher``), registration and last-change
times, sector (``dcat:theme``: the exchange's own ``{base_url}/themes/{sector}`` concept, plus the
matching EU data-theme concepts where the sector clearly maps to one), the registered version, the
effective GB/T 43697-2024 grade, the ``dvfp1`` content fingerprint, and personal-information *flags*.
Profile values, PI findings, schemas, row counts and the lawful source are never exported.

The ``dvfp1`` fingerprint is exported as ``dvl:fingerprint`` on the dataset, not as ``spdx:checksum`` on
the distribution: an SPDX checksum is a digest of the bytes a download returns, and the fingerprint is a
digest of the rows' canonical values (the same for CSV and Parquet encodings of the same table).

Each dataset has one distribution: the exchange's access point for it (``dcat:accessURL``), the source's
format, the exchange's contract terms (``dct:license``) and a rights statement: usable but invisible,
access through contracts only.

Typing
------
DCAT-AP 3.0.0 constrains most object properties with ``sh:class``, and a SHACL validator without
inference only sees ``rdf:type`` triples present in the data. So every node the catalog points at is
typed explicitly: agents ``foaf:Agent``, themes ``skos:Concept`` (with the mandatory ``skos:prefLabel``),
formats ``dct:MediaTypeOrExtent``, media types ``dct:MediaType``, licence ``dct:LicenseDocument``,
rights ``dct:RightsStatement``, language ``dct:LinguisticSystem``, homepage ``foaf:Document`` and even
the access URL ``rdfs:Resource`` (3.0.0 states ``sh:class rdfs:Resource`` on ``dcat:accessURL``; see
SEMICeu/DCAT-AP issue #412, relaxed in 3.0.1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from datavalley.errors import DatavalleyError, InvalidInput
from datavalley.identity.model import Participant
from datavalley.rights.model import Resource, ResourceStatus

JSONLD_MEDIA_TYPE = "application/ld+json"

DVL = "https://datavalley.dev/ns#"
"""The datavalley vocabulary: ``dvl:grade``, ``dvl:fingerprint`` and the flag properties."""

CONTEXT: dict[str, str] = {
    "adms": "http://www.w3.org/ns/adms#",
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "dvl": DVL,
    "foaf": "http://xmlns.com/foaf/0.1/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
"""The inline JSON-LD context: prefixes only; every value carries its own ``@language`` or ``@type``."""

ACCESS_PATH = "/v1/catalog/resources/{id}"
"""Path (under ``base_url``) of a resource's access point, the ``dcat:accessURL`` of its distribution."""

RIGHTS_EN = (
    "Usable but invisible: access through contracts. The data stays on the provider's node; a consumer "
    "may use it only as a contract on this exchange allows."
)
RIGHTS_ZH = "可用不可见：通过合约访问。数据不离开提供方节点，使用方仅可在本交易所合约约定的范围内使用。"

_EU = "http://publications.europa.eu/resource/authority"
_IANA = "https://www.iana.org/assignments/media-types"

# EU file-type authority list entries for the registry's formats; the others get an exchange-local IRI.
_FILE_TYPES: dict[str, str] = {"csv": f"{_EU}/file-type/CSV", "parquet": f"{_EU}/file-type/PARQUET"}
_FORMAT_LABELS: dict[str, str] = {
    "csv": "CSV",
    "parquet": "Apache Parquet",
    "jsonl": "JSON Lines",
    "json": "JSON",
    "xlsx": "Excel workbook (.xlsx)",
    "sql": "SQL database table",
}
# IANA-registered media types only (JSON Lines has none; a database table is not a media type).
_MEDIA_TYPES: dict[str, str] = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}

# EU language authority codes for the catalog's language (ISO 639-1 primary subtag -> code).
_LANGUAGES: dict[str, str] = {
    "ar": "ARA",
    "de": "DEU",
    "en": "ENG",
    "es": "SPA",
    "fr": "FRA",
    "it": "ITA",
    "ja": "JPN",
    "ko": "KOR",
    "pt": "POR",
    "ru": "RUS",
    "zh": "ZHO",
}
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")

# EU data themes (http://publications.europa.eu/resource/authority/data-theme): code -> (English label,
# case-folded fragments of a sector name that map to it). A sector may map to several themes or none.
_EU_THEMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "AGRI": (
        "Agriculture, fisheries, forestry and food",
        ("agricultur", "farm", "fisher", "forestry", "food", "农业", "渔业", "林业", "食品"),
    ),
    "ECON": (
        "Economy and finance",
        ("financ", "bank", "insurance", "econom", "金融", "银行", "保险", "经济", "财政"),
    ),
    "EDUC": ("Education, culture and sport", ("educat", "school", "cultur", "sport", "教育", "文化", "体育")),
    "ENER": ("Energy", ("energy", "electricity", "power grid", "能源", "电力")),
    "ENVI": ("Environment", ("environment", "climate", "weather", "环境", "生态", "气象")),
    "GOVE": ("Government and public sector", ("government", "public sector", "政务", "政府")),
    "HEAL": ("Health", ("health", "medical", "hospital", "卫生", "医疗", "健康", "医院", "疾控")),
    "JUST": (
        "Justice, legal system and public safety",
        ("justice", "legal", "court", "司法", "法院", "公安"),
    ),
    "REGI": ("Regions and cities", ("urban", "city", "cities", "城市")),
    "SOCI": ("Population and society", ("population", "social", "人口", "社会")),
    "TECH": ("Science and technology", ("science", "technolog", "research", "科技", "科学")),
    "TRAN": ("Transport", ("transport", "traffic", "logistic", "交通", "运输", "物流")),
}


@dataclass(frozen=True)
class CatalogInfo:
    """What the catalog says about itself.

    ``base_url`` is the exchange's public http(s) URL; every IRI in the export is minted under it.
    ``language`` is a BCP 47 tag; it tags the catalog's title and description and also the resources'
    names, descriptions and tags (all registered on this exchange, in its working language).
    """

    base_url: str
    title: str
    description: str
    publisher: Participant
    homepage: str | None
    language: str = "zh"


def is_public(resource: Resource) -> bool:
    """True if ``resource`` belongs in the public catalog: published and in status ``registered``."""
    return resource.published and resource.status is ResourceStatus.REGISTERED


def catalog_to_jsonld(
    info: CatalogInfo, resources: Sequence[Resource], publishers: Mapping[str, Participant]
) -> dict[str, Any]:
    """The public catalog as a DCAT-AP 3.0 JSON-LD document (``@context`` inline, flat ``@graph``).

    ``resources`` may contain anything; only those passing :func:`is_public` are listed, ordered by id.
    ``publishers`` maps participant ids to participants and must hold every listed resource's provider.
    The output is deterministic for the same input.

    Raises:
        InvalidInput: ``base_url`` is not an absolute http(s) URL, or ``language`` is not a language tag.
        DatavalleyError: a listed resource's provider is missing from ``publishers``, or two listed
            resources share an id.
    """
    base = _base_url(info.base_url)
    lang = _language(info.language)
    listed = sorted((r for r in resources if is_public(r)), key=lambda r: r.id)

    shared: dict[str, dict[str, Any]] = {}  # nodes several others point at, by @id

    def share(node: dict[str, Any]) -> dict[str, str]:
        shared.setdefault(node["@id"], node)
        return {"@id": node["@id"]}

    scheme_iri = f"{base}/themes"
    catalog: dict[str, Any] = {
        "@id": f"{base}/catalog",
        "@type": "dcat:Catalog",
        "dct:title": _text(info.title, lang),
        "dct:description": _text(info.description, lang),
        "dct:publisher": share(_agent(base, info.publisher)),
        "dcat:themeTaxonomy": [{"@id": scheme_iri}],
    }
    if info.homepage:
        catalog["foaf:homepage"] = share({"@id": info.homepage, "@type": "foaf:Document"})
    language_code = _LANGUAGES.get(lang.split("-")[0].lower())
    if language_code:
        catalog["dct:language"] = share(
            {"@id": f"{_EU}/language/{language_code}", "@type": "dct:LinguisticSystem"}
        )
    if listed:
        catalog["dct:modified"] = _datetime(max(r.updated_at for r in listed))

    licence = {
        "@id": f"{base}/terms#licence",
        "@type": "dct:LicenseDocument",
        "rdfs:label": [
            _text("Contract terms of this exchange: use only as a contract allows", "en"),
            _text("本交易所合约条款：仅可在合约约定的范围内使用", "zh"),
        ],
    }
    rights = {
        "@id": f"{base}/terms#rights",
        "@type": "dct:RightsStatement",
        "rdfs:label": [_text(RIGHTS_EN, "en"), _text(RIGHTS_ZH, "zh")],
    }
    restricted = {"@id": f"{_EU}/access-right/RESTRICTED", "@type": "dct:RightsStatement"}

    datasets: list[dict[str, Any]] = []
    seen: set[str] = set()
    eu_themes_used = False
    for r in listed:
        if r.id in seen:
            raise DatavalleyError(f"resource {r.id!r} is listed twice in the catalog export", resource=r.id)
        seen.add(r.id)
        provider = publishers.get(r.provider_id)
        if provider is None:
            raise DatavalleyError(
                f"provider {r.provider_id!r} of resource {r.id!r} is missing from the catalog's publishers",
                resource=r.id,
                provider=r.provider_id,
            )
        dataset_iri = f"{base}/catalog/datasets/{_segment(r.id)}"
        distribution: dict[str, Any] = {
            "@id": f"{dataset_iri}#distribution",
            "@type": "dcat:Distribution",
            "dcat:accessURL": {"@id": base + ACCESS_PATH.format(id=_segment(r.id)), "@type": "rdfs:Resource"},
            "dct:format": share(_format(base, r.format)),
            "dct:license": share(licence),
            "dct:rights": share(rights),
        }
        media_type = _MEDIA_TYPES.get(r.format.lower())
        if media_type:
            distribution["dcat:mediaType"] = share({"@id": f"{_IANA}/{media_type}", "@type": "dct:MediaType"})

        dataset: dict[str, Any] = {
            "@id": dataset_iri,
            "@type": "dcat:Dataset",
            "dct:identifier": r.id,
            "dct:title": _text(r.name, lang),
            # dct:description is mandatory in DCAT-AP; registration allows an empty one.
            "dct:description": _text(r.description.strip() or r.name, lang),
            "dct:publisher": share(_agent(base, provider)),
            "dct:issued": _datetime(r.created_at),
            "dct:modified": _datetime(r.updated_at),
            "dct:accessRights": share(restricted),
            "dcat:version": str(r.version),
            "dcat:distribution": [{"@id": distribution["@id"]}],
            "dvl:grade": r.classification.effective.value,
            "dvl:gradeConfirmed": _boolean(r.classification.confirmed is not None),
            "dvl:fingerprint": r.fingerprint,
            "dvl:personalInformation": _boolean(r.pii_present),
            "dvl:sensitivePersonalInformation": _boolean(r.sensitive_pii),
            "dvl:publicData": _boolean(r.public_data),
        }
        keywords = _keywords(r.tags)
        if keywords:
            dataset["dcat:keyword"] = [_text(k, lang) for k in keywords]
        themes = _themes(base, scheme_iri, r.classification.sector)
        if themes:
            eu_themes_used = eu_themes_used or any(t["@id"].startswith(_EU) for t in themes)
            dataset["dcat:theme"] = [share(t) for t in themes]
        datasets.append(dataset)
        datasets.append(distribution)

    if listed:
        catalog["dcat:dataset"] = [{"@id": d["@id"]} for d in datasets if d["@type"] == "dcat:Dataset"]
    schemes: list[dict[str, Any]] = [
        {
            "@id": scheme_iri,
            "@type": "skos:ConceptScheme",
            "dct:title": [_text("Sectors", "en"), _text("行业领域", "zh")],
        }
    ]
    if eu_themes_used:
        eu_scheme = f"{_EU}/data-theme"
        catalog["dcat:themeTaxonomy"].append({"@id": eu_scheme})
        schemes.append(
            {"@id": eu_scheme, "@type": "skos:ConceptScheme", "dct:title": _text("Data theme", "en")}
        )

    graph = [catalog, *schemes, *datasets, *(shared[k] for k in sorted(shared))]
    return {"@context": dict(CONTEXT), "@graph": graph}


def _base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidInput(f"base_url must be an absolute http(s) URL, not {url!r}", field="base_url")
    return url.strip().rstrip("/")


def _language(tag: str) -> str:
    if not _LANGUAGE_TAG.match(tag):
        raise InvalidInput(
            f"language must be a BCP 47 language tag such as 'zh', not {tag!r}", field="language"
        )
    return tag


def _segment(value: str) -> str:
    """``value`` as one IRI path segment (percent-encoded; '/' too)."""
    return quote(value, safe="")


def _text(value: str, lang: str) -> dict[str, str]:
    return {"@value": value, "@language": lang}


def _datetime(value: datetime) -> dict[str, str]:
    return {"@value": value.isoformat(), "@type": "xsd:dateTime"}


def _boolean(value: bool) -> dict[str, Any]:
    return {"@value": value, "@type": "xsd:boolean"}


def _keywords(tags: Sequence[str]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        tag = tag.strip()
        if tag and tag not in out:
            out.append(tag)
    return out


def _agent(base: str, p: Participant) -> dict[str, Any]:
    """A participant as a publisher: its name and official registry id (e.g. a unified social credit code)."""
    return {
        "@id": f"{base}/participants/{_segment(p.id)}",
        "@type": ["foaf:Agent", "foaf:Organization"],
        "foaf:name": p.name,
        "dct:identifier": p.registry_id,
        "adms:identifier": {"@type": "adms:Identifier", "skos:notation": p.registry_id},
    }


def _format(base: str, fmt: str) -> dict[str, Any]:
    key = fmt.lower()
    iri = _FILE_TYPES.get(key) or f"{base}/formats/{_segment(key)}"
    return {"@id": iri, "@type": "dct:MediaTypeOrExtent", "rdfs:label": _FORMAT_LABELS.get(key, fmt)}


def _themes(base: str, scheme_iri: str, sector: str) -> list[dict[str, Any]]:
    """The exchange's concept for ``sector`` plus the EU data themes it maps to (none for a blank sector)."""
    sector = sector.strip()
    if not sector:
        return []
    folded = sector.casefold()
    eu = [
        {
            "@id": f"{_EU}/data-theme/{code}",
            "@type": "skos:Concept",
            "skos:prefLabel": _text(label, "en"),
            "skos:inScheme": {"@id": f"{_EU}/data-theme"},
        }
        for code, (label, fragments) in _EU_THEMES.items()
        if any(f in folded for f in fragments)
    ]
    own: dict[str, Any] = {
        "@id": f"{base}/themes/{_segment(sector)}",
        "@type": "skos:Concept",
        "skos:prefLabel": sector,
        "skos:inScheme": {"@id": scheme_iri},
    }
    if eu:
        own["skos:closeMatch"] = [{"@id": t["@id"]} for t in eu]
    return [own, *eu]
