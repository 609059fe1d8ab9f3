"""The decision engine: a proposed transfer → pathway, the articles that decided it, what must be on file.

A pure function of a :class:`~datavalley.crossborder.model.Proposal` and a
:class:`~datavalley.crossborder.rules.RuleSet`: no clock, no database. The order of the checks is the
branch table in docs/CROSS_BORDER.md; ``tests/crossborder/test_engine.py`` covers every row and boundary.

China (origin ``CN``), CAC Provisions on Promoting and Regulating Cross-Border Data Flows (2024):

1. same jurisdiction → not a transfer;
2. core data → forbidden (DSL art. 21: no export pathway is encoded for core data);
3. no personal information and no important data → art. 3 exemption if a trade/transport/academic/
   manufacturing/marketing basis is on file, else non-personal (anonymised aggregates: PIPL art. 73(4));
4. FTZ exporter, data of a sector its zone's list covers, categories outside the list, no important
   data → exempt (art. 6);
5. personal information collected abroad and re-exported, no important data → exempt (art. 4);
6. contract necessity / HR / emergency, no important data → exempt (art. 5(1)–(3));
7. important data → security assessment (art. 7; DSL art. 31);
8. CIIO exporting personal information → security assessment (art. 7(1); PIPL art. 40);
9. ≥ 10,000 individuals' sensitive PI or ≥ 1,000,000 individuals' PI since 1 January → security
   assessment (art. 7(2));
10. any sensitive PI (< 10,000) or ≥ 100,000 individuals' PI → standard contract or certification
    (art. 8), plus separate consent for sensitive PI (PIPL arts. 29, 39);
11. otherwise (non-CIIO, < 100,000 non-sensitive) → exempt (art. 5(4)).

EU/EEA origin, recipient outside the EEA: anonymous → not personal data (recital 26); adequacy decision in
force on the transfer date and not partial → art. 45; otherwise SCC 2021/914 with the module chosen by the
parties' roles plus a transfer impact assessment (art. 46(2)(c)).
"""

from __future__ import annotations

from datavalley.crossborder.model import ART3_BASES, GDPR_ROLES, Decision, Pathway, Proposal
from datavalley.crossborder.rules import RuleSet
from datavalley.errors import InvalidInput


def _check(p: Proposal) -> None:
    for name in ("origin", "recipient"):
        v = getattr(p, name)
        if not (isinstance(v, str) and len(v) == 2 and v.isalpha() and v.isupper()):
            raise InvalidInput(f"{name} must be an ISO 3166-1 alpha-2 code, got {v!r}", field=name)
    for name in ("individuals_ub", "sensitive_ub"):
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidInput(f"{name} must be a non-negative integer", field=name)
    for name in ("exporter_role", "importer_role"):
        if getattr(p, name) not in GDPR_ROLES:
            raise InvalidInput(f"{name} must be controller or processor", field=name)


def decide(p: Proposal, rules: RuleSet) -> Decision:
    """The pathway for ``p`` under ``rules`` (raises :class:`InvalidInput` for malformed facts)."""
    _check(p)
    v = rules.version
    if p.origin == p.recipient:
        return Decision(
            "none", False, Pathway.NOT_CROSS_BORDER, None, (), (), (),
            (f"origin and recipient are both in {p.origin}",), False, rules_version=v,
        )  # fmt: skip
    if p.origin == "CN":
        return _cn(p, rules)
    if p.origin in rules.eea and p.recipient not in rules.eea:
        return _gdpr(p, rules)
    reason = (
        f"transfer within the EEA ({p.origin} → {p.recipient})"
        if p.origin in rules.eea
        else f"no encoded regime governs exports from {p.origin}"
    )
    return Decision("none", True, Pathway.UNREGULATED, None, (), (), (), (reason,), False, rules_version=v)


def _cn(p: Proposal, r: RuleSet) -> Decision:
    a = r.cn_articles
    v = r.version
    personal = p.personal and not p.anonymised
    sensitive = personal and p.sensitive
    pi_duties = (
        (
            "notice and separate consent for the export "
            f"({a['separate_consent']}; {a['notice_consent_pipia']})",
            "PI protection impact assessment before export, kept 3 years "
            f"({a['pipia']}; {a['pipia_contents']})",
        )
        if personal
        else ()
    )

    def dec(
        pathway: Pathway,
        articles: tuple[str, ...],
        reasons: tuple[str, ...],
        *,
        exemption: str | None = None,
        requires: tuple[tuple[str, ...], ...] = (),
        counts: bool = False,
    ) -> Decision:
        return Decision(
            "cn", True, pathway, exemption, articles, requires, pi_duties, reasons, counts, rules_version=v
        )

    if p.core:
        return dec(
            Pathway.FORBIDDEN,
            (a["core_data"],),
            ("core data is under the strictest management; the exchange encodes no export pathway for it",),
        )
    if not personal and not p.important:
        art3 = sorted(p.bases & ART3_BASES)
        if art3:
            return dec(
                Pathway.EXEMPT,
                (r.exemption_article(art3[0]),),
                (f"{art3[0]} data with no personal information or important data",),
                exemption=art3[0],
            )
        if p.personal and p.anonymised:
            return dec(
                Pathway.NON_PERSONAL,
                (a["anonymised"],),
                (
                    "an anonymised aggregate: the result cannot identify a person and cannot be restored "
                    "(minimum group size and differential privacy), so it is not personal information",
                ),
            )
        return dec(
            Pathway.NON_PERSONAL,
            (a["pathways"], a["important_data_export"]),
            ("no personal information and no important data",),
        )
    if not p.important and p.ftz_zone is not None:
        zone = r.zone(p.ftz_zone)
        if zone is not None and not (p.ciio and zone.ciio_excluded) and zone.covers_sector(p.sector):
            listed = set(zone.categories) & set(p.categories)
            if zone.fields_encoded and zone.categories and not listed:
                return dec(
                    Pathway.EXEMPT,
                    (r.exemption_article("ftz"),),
                    (f"{zone.name}: the data's categories are outside the list",),
                    exemption="ftz",
                )
    if not p.important and "reexport" in p.bases:
        return dec(
            Pathway.EXEMPT,
            (r.exemption_article("reexport"),),
            ("personal information collected abroad and exported again, no domestic data added",),
            exemption="reexport",
        )
    if not p.important:
        for basis in ("contract_necessity", "hr", "emergency"):
            if basis in p.bases:
                return dec(
                    Pathway.EXEMPT,
                    (r.exemption_article(basis),),
                    (r.exemptions[basis]["text"],),
                    exemption=basis,
                )
    sa = ("security_assessment",)
    if p.important:
        arts = (
            r.cn_articles["security_assessment"],
            a["important_data_export"],
            a["important_data_notified"],
        )
        return dec(
            Pathway.SECURITY_ASSESSMENT,
            (*arts, a["localisation"]) if personal else arts,
            ("important data (graded important) is exported",),
            requires=(sa,),
            counts=personal,
        )
    if p.ciio:
        return dec(
            Pathway.SECURITY_ASSESSMENT,
            (f"{a['security_assessment']}(1)", a["localisation"]),
            ("a critical information infrastructure operator exports personal information",),
            requires=(sa,),
            counts=True,
        )
    consent = (("consent",),) if sensitive else ()
    if sensitive and p.sensitive_ub >= r.sensitive_security_assessment_from:
        return dec(
            Pathway.SECURITY_ASSESSMENT,
            (f"{a['security_assessment']}(2)", a["localisation"], a["sensitive_consent"]),
            (
                f"sensitive personal information of {p.sensitive_ub:,} individuals (upper bound) since "
                f"1 January ≥ {r.sensitive_security_assessment_from:,}",
            ),
            requires=(sa, *consent),
            counts=True,
        )
    if not sensitive and p.individuals_ub >= r.security_assessment_from:
        return dec(
            Pathway.SECURITY_ASSESSMENT,
            (f"{a['security_assessment']}(2)", a["localisation"]),
            (
                f"personal information of {p.individuals_ub:,} individuals (upper bound) since 1 January "
                f"≥ {r.security_assessment_from:,}",
            ),
            requires=(sa,),
            counts=True,
        )
    sc = ("standard_contract", "certification")
    if sensitive:
        return dec(
            Pathway.STANDARD_CONTRACT,
            (a["standard_contract"], a["sc_filing"], a["sensitive_consent"], a["separate_consent"]),
            (
                f"sensitive personal information of {p.sensitive_ub:,} individuals (upper bound) since "
                f"1 January < {r.sensitive_security_assessment_from:,}",
            ),
            requires=(sc, *consent),
            counts=True,
        )
    if p.individuals_ub >= r.standard_contract_from:
        return dec(
            Pathway.STANDARD_CONTRACT,
            (a["standard_contract"], a["sc_filing"]),
            (
                f"personal information of {p.individuals_ub:,} individuals (upper bound) since 1 January: "
                f"≥ {r.standard_contract_from:,} and < {r.security_assessment_from:,}",
            ),
            requires=(sc,),
            counts=True,
        )
    return dec(
        Pathway.EXEMPT,
        (r.exemption_article("small_volume"),),
        (
            f"personal information (not sensitive) of {p.individuals_ub:,} individuals (upper bound) since "
            f"1 January < {r.exempt_below:,}, exporter is not a CIIO",
        ),
        exemption="small_volume",
        counts=True,
    )


def _gdpr(p: Proposal, r: RuleSet) -> Decision:
    a = r.gdpr_articles
    v = r.version
    if not p.personal or p.anonymised:
        return Decision(
            "gdpr", True, Pathway.NON_PERSONAL, None, (a["anonymous"],), (), (),
            ("anonymous or non-personal data is outside the GDPR",), False, rules_version=v,
        )  # fmt: skip
    ad = r.adequate(p.recipient, p.on)
    if ad is not None and ad.partial is None:
        return Decision(
            "gdpr", True, Pathway.GDPR_ADEQUACY, None, (a["adequacy"], ad.decision), (), (),
            (f"adequacy decision {ad.decision} for {p.recipient} ({ad.date})",), True, rules_version=v,
        )  # fmt: skip
    module = r.scc_modules[f"{p.exporter_role}>{p.importer_role}"]
    why = (
        f"the adequacy decision for {p.recipient} is partial ({ad.partial}); not relied on"
        if ad is not None
        else f"no adequacy decision for {p.recipient}"
    )
    return Decision(
        "gdpr", True, Pathway.GDPR_SCC, None, (a["general_principle"], a["safeguards"], a["scc"], a["tia"]),
        (("scc",), ("tia",)), (), (why, f"SCC {module} ({p.exporter_role} to {p.importer_role})"), True,
        scc_module=module, rules_version=v,
    )  # fmt: skip
