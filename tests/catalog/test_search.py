"""Catalog search finds what matches, counts facets over all matches, and hides what a caller may not see."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import World
from datavalley.catalog.search import SearchResult, search_resources
from datavalley.client import Client
from datavalley.errors import InvalidInput
from datavalley.identity.model import Principal
from datavalley.node.analysis import analyse_source, registration_payload
from datavalley.rights.model import Resource


@dataclass
class Party:
    id: str
    client: Client
    principal: Principal


def _party(world: World, name: str) -> Party:
    participant, _, token = world.onboard(name, ["provider", "consumer"])
    return Party(participant.id, world.client_for(token), world.exchange.authenticate(token))


def _register(party: Party, tmp_path: Path, name: str, body: str, **kw: Any) -> Resource:
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}.csv"
    path.write_text(body, encoding="utf-8")
    args: dict[str, Any] = {"sector": "transport", "lawful_source": "own operations", "published": True}
    args.update(kw)
    analysis = registration_payload(analyse_source(str(path)))
    return party.client.register_resource(name=name, analysis=analysis, **args).value


def _search(world: World, who: Principal, **kw: Any) -> SearchResult:
    return world.exchange.read(who, search_resources, **kw)


def _ids(result: SearchResult) -> set[str]:
    return {r.id for r in result.page.items}


@dataclass
class Catalog:
    alpha: Party
    beta: Party
    reader: Party
    operator: Principal
    resources: dict[str, Resource]


@pytest.fixture
def catalog(world: World, tmp_path: Path) -> Catalog:
    alpha, beta, reader = (_party(world, n) for n in ("Alpha Freight", "Beta Health", "Gamma Reader"))
    phones = "driver_phone,km\n13812345678,12\n13912345678,30\n"
    r = {
        "trips": _register(alpha, tmp_path, "干线货运 Trips 2026", "trip_id,km\n1,10\n", tags=["logistics"]),
        "phones": _register(alpha, tmp_path, "Driver contacts", phones, tags=["logistics", "contacts"]),
        "hidden": _register(alpha, tmp_path, "Trips draft", "trip_id,km\n2,20\n", published=False),
        "cancelled": _register(alpha, tmp_path, "Trips old", "trip_id,km\n3,30\n"),
        "visits": _register(
            beta, tmp_path, "门诊 visits", "visit_id,dept\n1,心内科\n", sector="health", tags=["medical"]
        ),
        "percent": _register(
            beta,
            tmp_path,
            "Growth 100% by_region, O'Hara's back\\slash",
            "region,growth\nA,1\n",
            sector="health",
        ),
    }
    alpha.client.resource_action(r["cancelled"].id, "cancel", {"reason": "superseded"})
    return Catalog(alpha, beta, reader, world.exchange.authenticate(world.operator_token), r)


def test_visibility_other_participants_see_only_published_live(world: World, catalog: Catalog) -> None:
    r = {k: v.id for k, v in catalog.resources.items()}
    everything = set(r.values())
    assert _ids(_search(world, catalog.operator, limit=50)) == everything
    # alpha holds the four transport resources (also the unpublished and cancelled ones); beta's are public.
    assert _ids(_search(world, catalog.alpha.principal, limit=50)) == everything
    seen_by_reader = _search(world, catalog.reader.principal, limit=50)
    assert _ids(seen_by_reader) == everything - {r["hidden"], r["cancelled"]}
    # Nor can an unseen resource be counted through the facets.
    assert seen_by_reader.total == 4
    assert seen_by_reader.facets["provider"] == {catalog.alpha.id: 2, catalog.beta.id: 2}
    # A provider sees its own unpublished and cancelled resources, not another's.
    assert _ids(_search(world, catalog.beta.principal, q="trips", limit=50)) == {r["trips"]}


def test_terms_are_anded_case_insensitive_substrings(world: World, catalog: Catalog) -> None:
    r = {k: v.id for k, v in catalog.resources.items()}
    op = catalog.operator
    assert _ids(_search(world, op, q="TRIPS")) == {r["trips"], r["hidden"], r["cancelled"]}
    assert _ids(_search(world, op, q="trips draft")) == {r["hidden"]}
    assert _ids(_search(world, op, q="货运")) == {r["trips"]}  # Chinese without a word segmenter
    assert _ids(_search(world, op, q="门诊 health")) == {r["visits"]}  # name and sector
    assert _ids(_search(world, op, q="driver_phone")) == {r["phones"]}  # column names are searched
    assert _ids(_search(world, op, q="trips nothing-like-this")) == set()


def test_like_wildcards_are_literal(world: World, catalog: Catalog) -> None:
    r = {k: v.id for k, v in catalog.resources.items()}
    op = catalog.operator
    assert _ids(_search(world, op, q="100%")) == {r["percent"]}
    assert _ids(_search(world, op, q="%")) == {r["percent"]}
    # "_" is a wildcard in LIKE; here it must only match a real underscore.
    assert _ids(_search(world, op, q="by_region")) == {r["percent"]}
    assert _ids(_search(world, op, q="p_ones")) == set()
    # Terms go into the SQL text as literals (see catalog.search._contains): quotes and backslashes are
    # matched as themselves, never as SQL or as LIKE escapes.
    assert _ids(_search(world, op, q="o'hara's")) == {r["percent"]}
    assert _ids(_search(world, op, q="'")) == {r["percent"]}
    assert _ids(_search(world, op, q="back\\slash")) == {r["percent"]}
    assert _ids(_search(world, op, q="\\")) == {r["percent"]}
    assert _ids(_search(world, op, q="x');--")) == set()
    assert _ids(_search(world, op, tags=["a' OR '1'='1"])) == set()


def test_filters_and_whole_tag_match(world: World, catalog: Catalog) -> None:
    r = {k: v.id for k, v in catalog.resources.items()}
    reader = catalog.reader.principal
    assert _ids(_search(world, reader, sector="health")) == {r["visits"], r["percent"]}
    assert _ids(_search(world, reader, tags=["LOGISTICS"])) == {r["trips"], r["phones"]}
    assert _ids(_search(world, reader, tags=["logistics", "contacts"])) == {r["phones"]}
    assert _ids(_search(world, reader, tags=["logist"])) == set()
    assert _ids(_search(world, reader, pii_present=True)) == {r["phones"]}
    assert _ids(_search(world, reader, provider=catalog.beta.id, q="visits")) == {r["visits"]}
    assert _ids(_search(world, catalog.operator, status="cancelled")) == {r["cancelled"]}
    assert _ids(_search(world, reader, grade="core")) == set()


def test_facets_count_all_matches_across_pages(world: World, catalog: Catalog) -> None:
    reader = catalog.reader.principal
    first = _search(world, reader, limit=1)
    assert len(first.page.items) == 1 and first.total == 4
    assert first.facets["sector"] == {"transport": 2, "health": 2}
    assert first.facets["pii_present"] == {"true": 1, "false": 3}
    assert sum(first.facets["grade"].values()) == 4
    seen: list[str] = [first.page.items[0].id]
    cursor = first.page.next_cursor
    while cursor:
        page = _search(world, reader, limit=1, cursor=cursor, with_facets=False)
        seen += [x.id for x in page.page.items]
        cursor = page.page.next_cursor
    assert len(seen) == len(set(seen)) == 4 and seen == sorted(seen)
    # When one page holds every match the facets are counted from it, not from a grouped query: same.
    whole = _search(world, reader, limit=50)
    assert whole.page.next_cursor is None
    assert (whole.total, whole.facets) == (first.total, first.facets)
    # An overseer's plain browse counts each facet on its own column (index scans): same figures again.
    op_paged, op_whole = _search(world, catalog.operator, limit=1), _search(world, catalog.operator, limit=50)
    assert (op_paged.total, op_paged.facets) == (op_whole.total, op_whole.facets) and op_whole.total == 6
    assert op_whole.facets["pii_present"] == {"true": 1, "false": 5}
    for q in ("trips", "nothing-matches", "health"):
        assert _search(world, reader, q=q, limit=50).facets == _search(world, reader, q=q, limit=1).facets, q


@pytest.mark.parametrize(
    ("kw", "field"),
    [({"grade": "secret"}, "grade"), ({"status": "gone"}, "status"), ({"q": "x" * 201}, "q")],
)
def test_invalid_input(world: World, catalog: Catalog, kw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        _search(world, catalog.reader.principal, **kw)
    assert info.value.details.get("field") == field
