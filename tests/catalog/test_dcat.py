"""The public catalog export validates against the official DCAT-AP 3.0.0 SHACL shapes.

Shapes: ``tests/data/standards/dcat-ap-3.0.0-SHACL.ttl``, a copy of SEMICeu/DCAT-AP
``releases/3.0.0/shacl/dcat-ap-SHACL.ttl`` (https://semiceu.github.io/DCAT-AP/releases/3.0.0/). A missing
file fails the tests: they exist to prove conformance, and skipping would hide that.

pyshacl runs with ``inference="none"`` and ``advanced=False``. The shapes use SHACL Core only (no
``sh:rule`` or SPARQL targets, so the SHACL-AF ``advanced`` mode changes nothing), and their ``sh:class``
constraints must hold on the ``rdf:type`` triples the export itself states. RDFS inference would only
paper over one of them (``sh:class rdfs:Resource`` on ``dcat:accessURL``, since every IRI is an
``rdfs:Resource`` under RDFS), not the others (no ontology is loaded to infer ``dct:LicenseDocument``
from ``dct:license``'s range), and a consumer's validator without inference, like the EU ITB one,
would still reject the document. So the export types every node and the test checks it does.

``Graph.parse(format="json-ld")`` in rdflib 7.6 builds a deprecated ``ConjunctiveGraph`` internally and
warns; the warning is rdflib's, not ours, so the tests that parse JSON-LD ignore exactly that message.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyshacl
import pytest
from rdflib import RDF, XSD, Graph, Literal, Namespace, URIRef

from conftest import make_uscc
from datavalley.catalog.dcat import ACCESS_PATH, CatalogInfo, catalog_to_jsonld, is_public
from datavalley.errors import DatavalleyError, InvalidInput
from datavalley.identity.model import Participant, ParticipantKind, ParticipantStatus, Role
from datavalley.rights.model import Classification, Grade, Resource, ResourceStatus

SHAPES = Path(__file__).parents[1] / "data" / "standards" / "dcat-ap-3.0.0-SHACL.ttl"
BASE = "https://exchange.datavalley.example.cn"

DCAT = Namespace("http://www.w3.org/ns/dcat#")
DCT = Namespace("http://purl.org/dc/terms/")
FOAF = Namespace("http://xmlns.com/foaf/0.1/")
SH = Namespace("http://www.w3.org/ns/shacl#")
SKOS = Namespace("http://www.w3.org/2004/02/skos/core#")
DVL = Namespace("https://datavalley.dev/ns#")

# rdflib's own deprecation warning from inside its JSON-LD parser (see the module docstring).
rdflib_jsonld = pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
PROFILE_SECRET = "13800138000"  # a phone number sampled into a profile: must never be exported
PII_SECRET = "330106199001011234"  # an ID number in a PI finding: must never be exported


def participant(pid: str, name: str, kind: ParticipantKind, roles: tuple[Role, ...]) -> Participant:
    return Participant(
        id=pid,
        name=name,
        kind=kind,
        country="CN",
        registry_id=make_uscc(),
        roles=roles,
        status=ParticipantStatus.VERIFIED,
        created_at=T0 - timedelta(days=90),
        verified_at=T0 - timedelta(days=89),
    )


OPERATOR = participant("par_operator", "数谷数据交易所有限公司", ParticipantKind.ENTERPRISE, (Role.OPERATOR,))
HOSPITAL = participant("par_hospital", "杭州市第一人民医院", ParticipantKind.PUBLIC_BODY, (Role.PROVIDER,))
LOGISTICS = participant("par_logistics", "浙江快运物流有限公司", ParticipantKind.ENTERPRISE, (Role.PROVIDER,))
PUBLISHERS = {p.id: p for p in (OPERATOR, HOSPITAL, LOGISTICS)}


def resource(rid: str, **changes: Any) -> Resource:
    base = Resource(
        id=rid,
        provider_id=HOSPITAL.id,
        name="门诊就诊记录（脱敏）",
        description="2023年至2024年门诊就诊记录，已去标识化处理，按科室与病种汇总。",
        tags=("医疗", "门诊", "卫生健康"),
        format="parquet",
        schema=(("visit_id", "VARCHAR"), ("department", "VARCHAR"), ("visit_date", "DATE")),
        row_count=1_250_000,
        fingerprint="dvfp1:" + "3f" * 32,
        version=2,
        profile={"columns": {"phone": {"top_values": [PROFILE_SECRET]}}},
        pii={"columns": {"id_number": {"examples": [PII_SECRET]}}},
        pii_present=True,
        sensitive_pii=True,
        estimated_individuals=310_000,
        classification=Classification(
            sector="health",
            suggested=Grade.IMPORTANT,
            reasons=("health data of 10,000 or more individuals",),
            declared=Grade.GENERAL,
            confirmed=Grade.IMPORTANT,
            confirmed_by="mem_operator_admin",
        ),
        public_data=True,
        published=True,
        status=ResourceStatus.REGISTERED,
        lawful_source="本院诊疗活动中依法收集",
        valid_until=T0 + timedelta(days=3 * 365),
        created_at=T0,
        updated_at=T0 + timedelta(days=12, hours=3),
    )
    return replace(base, **changes)


VISITS = resource("res_visits")
FREIGHT = resource(
    "res_freight",
    provider_id=LOGISTICS.id,
    name="干线货运时效",
    description="",  # registration allows an empty description; DCAT-AP requires one
    tags=(),
    format="csv",
    fingerprint="dvfp1:" + "a0" * 32,
    version=1,
    pii_present=False,
    sensitive_pii=False,
    estimated_individuals=0,
    classification=Classification("交通运输", Grade.GENERAL, (), Grade.GENERAL, None, None),
    public_data=False,
    created_at=T0 + timedelta(days=1),
    updated_at=T0 + timedelta(days=1),
)
JOURNAL = resource("res_journal", format="jsonl", name="随访日志", tags=("随访",), version=1)
DRAFT = resource("res_unpublished", published=False, name="未发布的检验数据")
WITHDRAWN = resource("res_cancelled", status=ResourceStatus.CANCELLED, name="已撤回的影像数据")
DISPUTED = resource("res_frozen", status=ResourceStatus.FROZEN, name="异议中的处方数据")
REVOKED = resource("res_revoked", status=ResourceStatus.REVOKED, name="已撤销的体检数据")

LISTED = (VISITS, FREIGHT, JOURNAL)
HIDDEN = (DRAFT, WITHDRAWN, DISPUTED, REVOKED)

INFO = CatalogInfo(
    base_url=BASE + "/",
    title="数谷数据资源目录",
    description="本交易所登记并公开的数据资源。可用不可见：通过合约访问。",
    publisher=OPERATOR,
    homepage=BASE,
)


@pytest.fixture(scope="module")
def shapes() -> Graph:
    if not SHAPES.is_file():
        pytest.fail(f"the DCAT-AP 3.0.0 SHACL shapes are missing: {SHAPES}")
    return Graph().parse(SHAPES, format="turtle")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return catalog_to_jsonld(
        INFO, [DRAFT, FREIGHT, WITHDRAWN, VISITS, DISPUTED, JOURNAL, REVOKED], PUBLISHERS
    )


def to_graph(document: dict[str, Any]) -> Graph:
    return Graph().parse(data=json.dumps(document, ensure_ascii=False), format="json-ld")


def validate(document: dict[str, Any], shapes: Graph) -> tuple[bool, Graph, str]:
    conforms, report, text = pyshacl.validate(
        to_graph(document), shacl_graph=shapes, inference="none", advanced=False, allow_warnings=False
    )
    assert isinstance(report, Graph) and isinstance(text, str)
    return bool(conforms), report, text


def dataset_iri(rid: str) -> URIRef:
    return URIRef(f"{BASE}/catalog/datasets/{rid}")


@rdflib_jsonld
def test_export_conforms_to_dcat_ap_3(doc: dict[str, Any], shapes: Graph) -> None:
    conforms, _, text = validate(doc, shapes)
    assert conforms, text


@rdflib_jsonld
def test_empty_catalog_conforms(shapes: Graph) -> None:
    """``dcat:dataset`` is optional on a DCAT-AP 3.0.0 catalog: an exchange with nothing public is valid."""
    empty = catalog_to_jsonld(INFO, [DRAFT, WITHDRAWN], PUBLISHERS)
    conforms, _, text = validate(empty, shapes)
    assert conforms, text
    assert not list(to_graph(empty).subjects(RDF.type, DCAT.Dataset))


def drop(key: str, of: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], None]:
    def tamper(document: dict[str, Any]) -> None:
        target = next(n for n in document["@graph"] if of(n))
        del target[key]

    return tamper


def retype(iri_part: str, new_type: str) -> Callable[[dict[str, Any]], None]:
    def tamper(document: dict[str, Any]) -> None:
        target = next(n for n in document["@graph"] if iri_part in n["@id"])
        target["@type"] = new_type

    return tamper


def is_a(rdf_type: str) -> Callable[[dict[str, Any]], bool]:
    return lambda n: rdf_type in ([n["@type"]] if isinstance(n.get("@type"), str) else n.get("@type", []))


@rdflib_jsonld
@pytest.mark.parametrize(
    ("tamper", "path"),
    [
        (drop("dct:title", is_a("dcat:Dataset")), DCT.title),
        (drop("dct:description", is_a("dcat:Dataset")), DCT.description),
        (drop("dct:publisher", is_a("dcat:Catalog")), DCT.publisher),
        (drop("dcat:accessURL", is_a("dcat:Distribution")), DCAT.accessURL),
        (drop("foaf:name", is_a("foaf:Agent")), FOAF.name),
        (drop("skos:prefLabel", is_a("skos:Concept")), SKOS.prefLabel),
        (retype("/terms#licence", "foaf:Document"), DCT.license),
    ],
    ids=[
        "dataset-without-title",
        "dataset-without-description",
        "catalog-without-publisher",
        "distribution-without-accessURL",
        "agent-without-name",
        "theme-without-label",
        "licence-not-a-LicenseDocument",
    ],
)
def test_tampered_export_fails_validation(
    doc: dict[str, Any], shapes: Graph, tamper: Callable[[dict[str, Any]], None], path: URIRef
) -> None:
    """The validation is real: breaking one DCAT-AP requirement is reported, on that property."""
    bad = copy.deepcopy(doc)
    tamper(bad)
    conforms, report, text = validate(bad, shapes)
    assert not conforms
    assert path in set(report.objects(None, SH.resultPath)), text


@rdflib_jsonld
def test_only_published_registered_resources_are_listed(doc: dict[str, Any]) -> None:
    g = to_graph(doc)
    datasets = set(g.subjects(RDF.type, DCAT.Dataset))
    assert datasets == {dataset_iri(r.id) for r in LISTED}
    catalog = URIRef(f"{BASE}/catalog")
    assert set(g.objects(catalog, DCAT.dataset)) == datasets
    for r in LISTED:
        assert list(g.objects(dataset_iri(r.id), DCT.identifier)) == [Literal(r.id)]
        assert list(g.subjects(DCT.identifier, Literal(r.id))) == [dataset_iri(r.id)]
        assert [n["@id"] for n in doc["@graph"]].count(str(dataset_iri(r.id))) == 1
    text = json.dumps(doc, ensure_ascii=False)
    for r in HIDDEN:
        assert r.id not in text and r.name not in text
        assert not is_public(r)


def test_input_order_does_not_matter() -> None:
    forward = catalog_to_jsonld(INFO, [*LISTED, *HIDDEN], PUBLISHERS)
    backward = catalog_to_jsonld(INFO, [*reversed(HIDDEN), *reversed(LISTED)], PUBLISHERS)
    assert forward == backward
    assert isinstance(forward["@context"], dict)  # inline: nothing for a JSON-LD processor to fetch


@rdflib_jsonld
def test_dataset_metadata(doc: dict[str, Any]) -> None:
    g = to_graph(doc)
    visits = dataset_iri(VISITS.id)
    assert g.value(visits, DCT.title) == Literal(VISITS.name, lang="zh")
    assert g.value(visits, DCT.description) == Literal(VISITS.description, lang="zh")
    assert set(g.objects(visits, DCAT.keyword)) == {Literal(t, lang="zh") for t in VISITS.tags}
    assert g.value(visits, DCT.issued) == Literal(T0.isoformat(), datatype=XSD.dateTime)
    assert g.value(visits, DCT.modified) == Literal(VISITS.updated_at.isoformat(), datatype=XSD.dateTime)
    assert g.value(visits, DVL.grade) == Literal("important")
    assert g.value(visits, DVL.fingerprint) == Literal(VISITS.fingerprint)
    assert g.value(visits, DVL.personalInformation) == Literal(True)
    assert g.value(visits, DVL.sensitivePersonalInformation) == Literal(True)

    hospital = URIRef(f"{BASE}/participants/{HOSPITAL.id}")
    assert g.value(visits, DCT.publisher) == hospital
    assert g.value(hospital, FOAF.name) == Literal(HOSPITAL.name)
    assert g.value(hospital, DCT.identifier) == Literal(HOSPITAL.registry_id)

    themes = set(g.objects(visits, DCAT.theme))
    assert themes == {
        URIRef(f"{BASE}/themes/health"),
        URIRef("http://publications.europa.eu/resource/authority/data-theme/HEAL"),
    }

    freight = dataset_iri(FREIGHT.id)
    assert not list(g.objects(freight, DCAT.keyword))
    assert g.value(freight, DCT.description) == Literal(FREIGHT.name, lang="zh")  # fallback for ""
    assert g.value(freight, DVL.grade) == Literal("general")
    assert set(g.objects(freight, DCAT.theme)) == {
        URIRef(f"{BASE}/themes/%E4%BA%A4%E9%80%9A%E8%BF%90%E8%BE%93"),  # 交通运输, percent-encoded
        URIRef("http://publications.europa.eu/resource/authority/data-theme/TRAN"),
    }
    assert g.value(freight, DCT.publisher) == URIRef(f"{BASE}/participants/{LOGISTICS.id}")


@rdflib_jsonld
def test_distribution(doc: dict[str, Any]) -> None:
    g = to_graph(doc)
    for r, file_type, media_type in [
        (VISITS, "http://publications.europa.eu/resource/authority/file-type/PARQUET", "vnd.apache.parquet"),
        (FREIGHT, "http://publications.europa.eu/resource/authority/file-type/CSV", "csv"),
        (JOURNAL, f"{BASE}/formats/jsonl", None),
    ]:
        (dist,) = g.objects(dataset_iri(r.id), DCAT.distribution)
        assert g.value(dist, DCAT.accessURL) == URIRef(BASE + ACCESS_PATH.format(id=r.id))
        assert g.value(dist, DCT["format"]) == URIRef(file_type)
        found = g.value(dist, DCAT.mediaType)
        assert (found is None) if media_type is None else str(found).endswith("/" + media_type)
        assert (g.value(dist, DCT.license), RDF.type, DCT.LicenseDocument) in g
        rights = g.value(dist, DCT.rights)
        assert rights is not None
        labels = {str(x) for x in g.objects(rights, URIRef("http://www.w3.org/2000/01/rdf-schema#label"))}
        assert any("usable but invisible: access through contracts" in x.lower() for x in labels)


def test_no_profile_or_pii_details(doc: dict[str, Any]) -> None:
    text = json.dumps(doc, ensure_ascii=False)
    for secret in (PROFILE_SECRET, PII_SECRET, VISITS.lawful_source, "visit_id", "1250000", "310000"):
        assert secret not in text


def test_missing_publisher_is_an_error() -> None:
    with pytest.raises(DatavalleyError, match="par_logistics"):
        catalog_to_jsonld(INFO, [FREIGHT], {OPERATOR.id: OPERATOR})


def test_duplicate_resource_is_an_error() -> None:
    with pytest.raises(DatavalleyError, match="twice"):
        catalog_to_jsonld(INFO, [VISITS, VISITS], PUBLISHERS)


@pytest.mark.parametrize("base_url", ["", "exchange.example.cn", "ftp://example.cn", "https://x.cn/?a=1"])
def test_base_url_must_be_absolute_http(base_url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        catalog_to_jsonld(replace(INFO, base_url=base_url), [VISITS], PUBLISHERS)
    assert info.value.details["field"] == "base_url"


def test_language_tag_is_checked() -> None:
    with pytest.raises(InvalidInput):
        catalog_to_jsonld(replace(INFO, language="zh CN"), [VISITS], PUBLISHERS)
