"""The branch table of the decision engine (docs/CROSS_BORDER.md): every branch and every boundary."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datavalley.crossborder.engine import decide
from datavalley.crossborder.model import BASES, Pathway, Proposal
from datavalley.crossborder.rules import FtzList, load
from datavalley.errors import InvalidInput

RULES = load()
SC = (("standard_contract", "certification"),)
SA = (("security_assessment",),)
CONSENT = (("consent",),)
PI = {"origin": "CN", "recipient": "DE", "personal": True}
SENS = {**PI, "sensitive": True}

# id, proposal, pathway, exemption, requires, an article that must be cited
TABLE: list[tuple[str, dict[str, Any], Pathway, str | None, tuple[tuple[str, ...], ...], str]] = [
    ("domestic", {"origin": "CN", "recipient": "CN", "personal": True, "important": True},
     Pathway.NOT_CROSS_BORDER, None, (), ""),
    ("core data", {**PI, "core": True}, Pathway.FORBIDDEN, None, (), "DSL art. 21"),
    ("core data even anonymised", {**PI, "core": True, "anonymised": True}, Pathway.FORBIDDEN, None, (),
     "DSL art. 21"),
    ("no PI, no important", {"origin": "CN", "recipient": "DE"}, Pathway.NON_PERSONAL, None, (),
     "PIPL art. 38"),
    ("anonymised aggregate", {**PI, "anonymised": True, "individuals_ub": 5_000_000},
     Pathway.NON_PERSONAL, None, (), "PIPL art. 4(1), art. 73(4)"),
    ("anonymised sensitive aggregate", {**SENS, "anonymised": True, "sensitive_ub": 50_000},
     Pathway.NON_PERSONAL, None, (), "art. 73(4)"),
    ("important data stays governed when aggregated", {**PI, "anonymised": True, "important": True},
     Pathway.SECURITY_ASSESSMENT, None, SA, "CAC 2024 art. 7"),
    ("art. 3 trade, no PI", {"origin": "CN", "recipient": "US", "bases": frozenset({"trade"})},
     Pathway.EXEMPT, "trade", (), "CAC 2024 art. 3"),
    ("art. 3 academic, no PI", {"origin": "CN", "recipient": "US", "bases": frozenset({"academic"})},
     Pathway.EXEMPT, "academic", (), "CAC 2024 art. 3"),
    ("art. 3 does not cover PI", {**PI, "bases": frozenset({"trade"}), "individuals_ub": 150_000},
     Pathway.STANDARD_CONTRACT, None, SC, "CAC 2024 art. 8"),
    ("art. 3 does not cover important data", {"origin": "CN", "recipient": "US", "important": True,
     "bases": frozenset({"manufacturing"})}, Pathway.SECURITY_ASSESSMENT, None, SA, "DSL art. 31"),
    ("re-export", {**PI, "bases": frozenset({"reexport"}), "individuals_ub": 2_000_000},
     Pathway.EXEMPT, "reexport", (), "CAC 2024 art. 4"),
    ("re-export with important data", {**PI, "important": True, "bases": frozenset({"reexport"})},
     Pathway.SECURITY_ASSESSMENT, None, SA, "CAC 2024 art. 7"),
    ("contract necessity", {**SENS, "bases": frozenset({"contract_necessity"}), "sensitive_ub": 90_000},
     Pathway.EXEMPT, "contract_necessity", (), "CAC 2024 art. 5(1)"),
    ("contract necessity for a CIIO", {**PI, "ciio": True, "bases": frozenset({"contract_necessity"})},
     Pathway.EXEMPT, "contract_necessity", (), "CAC 2024 art. 5(1)"),
    ("HR management", {**PI, "bases": frozenset({"hr"}), "individuals_ub": 3_000_000},
     Pathway.EXEMPT, "hr", (), "CAC 2024 art. 5(2)"),
    ("emergency", {**PI, "bases": frozenset({"emergency"})}, Pathway.EXEMPT, "emergency", (),
     "CAC 2024 art. 5(3)"),
    ("HR with important data", {**PI, "important": True, "bases": frozenset({"hr"})},
     Pathway.SECURITY_ASSESSMENT, None, SA, "CAC 2024 art. 7"),
    ("CIIO, any PI", {**PI, "ciio": True, "individuals_ub": 1}, Pathway.SECURITY_ASSESSMENT, None, SA,
     "CAC 2024 art. 7(1)"),
    ("CIIO, no PI", {"origin": "CN", "recipient": "DE", "ciio": True}, Pathway.NON_PERSONAL, None, (),
     "PIPL art. 38"),
    ("important data", {"origin": "CN", "recipient": "DE", "important": True},
     Pathway.SECURITY_ASSESSMENT, None, SA, "CAC 2024 art. 2"),
    ("0 individuals", {**PI, "individuals_ub": 0}, Pathway.EXEMPT, "small_volume", (), "CAC 2024 art. 5(4)"),
    ("99,999 individuals", {**PI, "individuals_ub": 99_999}, Pathway.EXEMPT, "small_volume", (),
     "CAC 2024 art. 5(4)"),
    ("100,000 individuals", {**PI, "individuals_ub": 100_000}, Pathway.STANDARD_CONTRACT, None, SC,
     "CAC 2024 art. 8"),
    ("999,999 individuals", {**PI, "individuals_ub": 999_999}, Pathway.STANDARD_CONTRACT, None, SC,
     "CAC 2024 art. 8"),
    ("1,000,000 individuals", {**PI, "individuals_ub": 1_000_000}, Pathway.SECURITY_ASSESSMENT, None, SA,
     "CAC 2024 art. 7(2)"),
    ("1 sensitive", {**SENS, "sensitive_ub": 1}, Pathway.STANDARD_CONTRACT, None, SC + CONSENT,
     "PIPL art. 29"),
    ("9,999 sensitive", {**SENS, "sensitive_ub": 9_999}, Pathway.STANDARD_CONTRACT, None, SC + CONSENT,
     "CAC 2024 art. 8"),
    ("10,000 sensitive", {**SENS, "sensitive_ub": 10_000}, Pathway.SECURITY_ASSESSMENT, None, SA + CONSENT,
     "CAC 2024 art. 7(2)"),
    ("HK is outside the mainland", {"origin": "CN", "recipient": "HK", "personal": True,
     "individuals_ub": 100_000}, Pathway.STANDARD_CONTRACT, None, SC, "CAC 2024 art. 8"),
    ("Beijing FTZ list without field items: no exemption", {**PI, "ftz_zone": "beijing",
     "sector": "retail", "individuals_ub": 200_000}, Pathway.STANDARD_CONTRACT, None, SC, "CAC 2024 art. 8"),
    ("Tianjin FTZ list names PI: no exemption", {**PI, "ftz_zone": "tianjin", "sector": "retail",
     "categories": frozenset({"personal_information"}), "individuals_ub": 200_000},
     Pathway.STANDARD_CONTRACT, None, SC, "CAC 2024 art. 8"),
    ("GDPR: anonymous", {"origin": "DE", "recipient": "CN", "personal": True, "anonymised": True},
     Pathway.NON_PERSONAL, None, (), "GDPR recital 26"),
    ("GDPR: adequacy (Japan)", {"origin": "FR", "recipient": "JP", "personal": True, "on": "2026-01-01"},
     Pathway.GDPR_ADEQUACY, None, (), "GDPR art. 45"),
    ("GDPR: adequacy not yet in force", {"origin": "FR", "recipient": "JP", "personal": True,
     "on": "2018-06-01"}, Pathway.GDPR_SCC, None, (("scc",), ("tia",)), "GDPR art. 46(2)(c)"),
    ("GDPR: partial adequacy (US) not relied on", {"origin": "DE", "recipient": "US", "personal": True,
     "on": "2026-01-01"}, Pathway.GDPR_SCC, None, (("scc",), ("tia",)), "GDPR art. 46(2)(c)"),
    ("GDPR: China needs SCC", {"origin": "DE", "recipient": "CN", "personal": True},
     Pathway.GDPR_SCC, None, (("scc",), ("tia",)), "2021/914"),
    ("GDPR: within the EEA", {"origin": "DE", "recipient": "NO", "personal": True},
     Pathway.UNREGULATED, None, (), ""),
    ("no encoded regime", {"origin": "US", "recipient": "CN", "personal": True}, Pathway.UNREGULATED, None,
     (), ""),
]  # fmt: skip


@pytest.mark.parametrize(("name", "facts", "pathway", "exemption", "requires", "article"), TABLE,
                         ids=[t[0] for t in TABLE])  # fmt: skip
def test_branch_table(
    name: str,
    facts: dict[str, Any],
    pathway: Pathway,
    exemption: str | None,
    requires: tuple[tuple[str, ...], ...],
    article: str,
) -> None:
    d = decide(Proposal(**facts), RULES)
    assert d.pathway == pathway, (name, d.reasons)
    assert d.exemption == exemption
    assert d.requires == requires
    assert d.rules_version == RULES.version
    if article:
        assert any(article in a for a in d.articles), d.articles
    assert d.reasons
    assert d.cross_border == (pathway != Pathway.NOT_CROSS_BORDER)


@pytest.mark.parametrize(
    ("roles", "module"),
    [
        (("controller", "controller"), "Module One"),
        (("controller", "processor"), "Module Two"),
        (("processor", "processor"), "Module Three"),
        (("processor", "controller"), "Module Four"),
    ],
)
def test_scc_module_follows_the_roles(roles: tuple[str, str], module: str) -> None:
    p = Proposal("DE", "CN", personal=True, exporter_role=roles[0], importer_role=roles[1])
    assert decide(p, RULES).scc_module == module


def _with_zone(**kw: Any) -> Any:
    zone = FtzList(
        zone="testzone", name="test list", published="2024-01-01", source="test", scope="sectors",
        sectors=("automotive",), categories=("vehicle_location", "personal_information.sensitive"),
        fields_encoded=True, ciio_excluded=True,
    )  # fmt: skip
    return replace(RULES, ftz=(*RULES.ftz, replace(zone, **kw)))


def test_ftz_branch_with_a_field_level_list() -> None:
    rules = _with_zone()
    base = Proposal(
        "CN", "DE", personal=True, ftz_zone="testzone", sector="automotive", individuals_ub=500_000
    )
    outside = decide(replace(base, categories=frozenset({"sales"})), rules)
    assert (outside.pathway, outside.exemption) == (Pathway.EXEMPT, "ftz")
    assert "CAC 2024 art. 6" in outside.articles
    # a listed category, another sector, a CIIO, important data, or an unlisted zone: the general rules apply
    assert decide(replace(base, categories=frozenset({"vehicle_location"})), rules).pathway == (
        Pathway.STANDARD_CONTRACT
    )
    assert decide(replace(base, sector="retail"), rules).pathway == Pathway.STANDARD_CONTRACT
    assert decide(replace(base, ciio=True), rules).pathway == Pathway.SECURITY_ASSESSMENT
    assert decide(replace(base, important=True), rules).pathway == Pathway.SECURITY_ASSESSMENT
    assert decide(replace(base, ftz_zone="nowhere"), rules).pathway == Pathway.STANDARD_CONTRACT
    # a list whose field-level items are not encoded never exempts (conservative)
    unencoded = _with_zone(fields_encoded=False)
    assert (
        decide(replace(base, categories=frozenset({"sales"})), unencoded).pathway == Pathway.STANDARD_CONTRACT
    )


def test_shipped_rule_data_is_dated_and_sourced() -> None:
    assert {z.zone for z in RULES.ftz} == {"tianjin", "beijing", "shanghai"}
    for z in RULES.ftz:
        assert z.published[:4] in ("2024", "2025") and z.source.startswith("http")
    assert RULES.exempt_below == 100_000 and RULES.security_assessment_from == 1_000_000
    assert RULES.sensitive_security_assessment_from == 10_000 and RULES.assessment_validity_years == 3
    assert RULES.sources["cac2024"]["promulgated"] == "2024-03-22"
    assert all(a.date and a.decision for a in RULES.adequacy)


def test_malformed_facts_are_refused() -> None:
    with pytest.raises(InvalidInput, match="origin"):
        decide(Proposal("china", "DE"), RULES)
    with pytest.raises(InvalidInput, match="individuals_ub"):
        decide(Proposal("CN", "DE", personal=True, individuals_ub=-1), RULES)
    with pytest.raises(InvalidInput, match="exporter_role"):
        decide(Proposal("DE", "CN", personal=True, exporter_role="owner"), RULES)


countries = st.sampled_from(["CN", "DE", "FR", "US", "JP", "HK", "NO", "GB"])


@given(
    origin=countries,
    recipient=countries,
    personal=st.booleans(),
    sensitive=st.booleans(),
    important=st.booleans(),
    ciio=st.booleans(),
    anonymised=st.booleans(),
    bases=st.frozensets(st.sampled_from(BASES)),
    n=st.integers(0, 3_000_000),
    m=st.integers(0, 30_000),
    extra=st.integers(0, 1_000_000),
)
def test_properties(
    origin: str, recipient: str, personal: bool, sensitive: bool, important: bool, ciio: bool,
    anonymised: bool, bases: frozenset[str], n: int, m: int, extra: int,
) -> None:  # fmt: skip
    p = Proposal(origin, recipient, personal=personal, sensitive=sensitive, important=important, ciio=ciio,
                 anonymised=anonymised, bases=bases, individuals_ub=n, sensitive_ub=m)  # fmt: skip
    d = decide(p, RULES)
    order = [Pathway.EXEMPT, Pathway.STANDARD_CONTRACT, Pathway.SECURITY_ASSESSMENT]
    if origin == "CN" and recipient != "CN":
        # important data is never exempt and never treated as non-personal
        if important:
            assert d.pathway in (Pathway.SECURITY_ASSESSMENT, Pathway.FORBIDDEN)
        # a larger count never leads to a laxer pathway (monotone in the upper bound)
        bigger = decide(replace(p, individuals_ub=n + extra, sensitive_ub=m + extra), RULES)
        if d.pathway in order and bigger.pathway in order:
            assert order.index(bigger.pathway) >= order.index(d.pathway)
        # a requirement is always named with the article that imposes it
        if d.requires:
            assert d.articles
    if origin == recipient:
        assert d.pathway == Pathway.NOT_CROSS_BORDER and not d.requires


def test_what_if_refuses_every_malformed_field() -> None:
    from datavalley.crossborder.service import what_if

    good: dict[str, Any] = {"origin": "CN", "recipient": "DE", "personal": True, "individuals_ub": 5}
    assert what_if(None, good)["pathway"] == "exempt"  # type: ignore[arg-type]
    for bad in (
        {"origin": 1}, {"on": 20260101}, {"sector": ["x"]}, {"ftz_zone": 3}, {"individuals_ub": "many"},
        {"individuals_ub": True}, {"bases": "hr"}, {"categories": [1]}, {"personal": 1}, {"nonsense": 1},
        {"exporter_role": "owner"}, {"recipient": "DEU"}, {"sector": "x" * 500},
    ):  # fmt: skip
        with pytest.raises(InvalidInput):
            what_if(None, {**good, **bad})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "terms", "mode", "k", "anonymised"),
    [
        ("private_analytics", {"privacy": {"min_group_size": 10, "epsilon": 1.0}}, None, None, True),
        ("private_analytics", {"privacy": {"min_group_size": 5, "epsilon": 1.0}}, None, None, False),
        ("private_analytics", {"privacy": {"min_group_size": 5}}, None, 12, True),
        ("set_intersection", {"psi_modes": ["cardinality"]}, None, None, True),
        ("set_intersection", {"psi_modes": ["cardinality", "intersection"]}, None, None, False),
        ("set_intersection", {"psi_modes": ["cardinality", "intersection"]}, "aggregate", None, True),
        ("set_intersection", {"psi_modes": ["cardinality"]}, "intersection", None, False),
        ("file_delivery", {}, None, None, False),
    ],
)
def test_which_results_count_as_anonymised(
    kind: str, terms: dict[str, Any], mode: str | None, k: int | None, anonymised: bool
) -> None:
    from datavalley.crossborder.enforce import _nature

    got, why = _nature(kind, terms, None, mode, k)
    assert got is anonymised and (why is not None) is anonymised
    if why:
        assert "PIPL art. 73(4)" in why
