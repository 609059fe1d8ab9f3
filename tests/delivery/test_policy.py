"""Delivery policy: the ODRL constraints round-trip, personal columns fail closed, row filters are exact
for any value (no SQL injection through names or literals), and bad terms are refused precisely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datavalley.delivery.policy import compile_plan, parse_delivery_terms, parse_row_filter, select_sql
from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.market.policy import Terms, build_agreement, parse

T0 = datetime(2026, 12, 1, tzinfo=UTC)
SCHEMA = [
    ("id", "BIGINT"),
    ("name", "VARCHAR"),
    ("phone", "VARCHAR"),
    ("region", "VARCHAR"),
    ("amount", "DOUBLE"),
]


def terms(**kw: Any) -> Terms:
    base: dict[str, Any] = dict(
        uid="urn:datavalley:contract:c_1",
        assigner="urn:datavalley:participant:p_1",
        assignee="urn:datavalley:participant:p_2",
        target="urn:datavalley:product:prd_1",
        action="dv:deliver",
        purposes=("research",),
        valid_from=T0,
        valid_until=T0 + timedelta(days=30),
    )
    base.update(kw)
    return Terms(**base)


def test_delivery_constraints_round_trip_through_odrl() -> None:
    t = terms(
        columns=("id", "region", "amount"),
        pi_treatment="pseudonymise",
        licensed_pi=("name",),
        row_filter=(
            {"column": "region", "isAnyOf": ["east", "o'hara"]},
            {"column": "amount", "gteq": 1.5, "lt": 9},
        ),
        max_bytes=10_000,
    )
    assert parse(build_agreement(t)) == t
    doc = build_agreement(t)
    doc["permission"][0]["constraint"].append(
        {"leftOperand": "dv:piTreatment", "operator": "eq", "rightOperand": "show"}
    )
    with pytest.raises(InvalidInput, match="piTreatment"):
        parse(doc)


def test_personal_columns_are_excluded_unless_licensed_or_pseudonymised() -> None:
    personal = frozenset({"name", "phone"})
    plan = compile_plan(terms(), SCHEMA, personal, {"amount": 2})
    assert [c for c, _ in plan.columns] == ["id", "region", "amount"]
    assert set(plan.excluded) == {"name", "phone"}
    assert plan.watermark == (("amount", 2),)
    plan = compile_plan(terms(pi_treatment="pseudonymise", licensed_pi=("name",)), SCHEMA, personal, {})
    assert [c for c, _ in plan.columns] == ["id", "name", "phone", "region", "amount"]
    assert plan.pseudonymised == ("phone",)
    plan = compile_plan(terms(columns=("id", "phone")), SCHEMA, personal, {"phone": 0, "id": 0})
    assert [c for c, _ in plan.columns] == ["id"] and plan.watermark == (("id", 0),)
    with pytest.raises(PolicyViolation, match="no column"):
        compile_plan(terms(columns=("phone",)), SCHEMA, personal, {})
    with pytest.raises(PolicyViolation, match="lacks"):
        compile_plan(terms(row_filter=({"column": "country", "eq": "CN"},)), SCHEMA, personal, {})


values = st.one_of(st.text(max_size=12), st.integers(-(10**6), 10**6))
names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=10
)


@settings(max_examples=20, deadline=None)
@given(
    col=names,
    rows=st.lists(st.text(max_size=6), min_size=1, max_size=30),
    allowed=st.lists(st.text(max_size=6), min_size=1, max_size=5),
    low=st.text(max_size=4),
)
def test_row_filters_are_exact_for_any_name_and_value(
    col: str, rows: list[str], allowed: list[str], low: str
) -> None:
    cond = parse_row_filter([{"column": col, "isAnyOf": allowed, "gteq": low}])
    plan = compile_plan(terms(row_filter=cond), [(col, "VARCHAR")], frozenset(), {})
    con = duckdb.connect()
    con.register("src", pa.table({col: pa.array(rows, pa.string())}))
    got = sorted(
        r[0] for r in con.execute(select_sql(plan, "src", pseudonym_salt="ab", watermark_keys={})).fetchall()
    )
    con.close()
    want = sorted(r for r in rows if r in allowed and r >= low)
    assert got == want


@given(bad=st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers(), min_size=1)))
def test_malformed_row_filters_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_row_filter(bad if not isinstance(bad, list) else [bad])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be an object"),
        ({"colour": 1}, "unknown delivery terms"),
        ({"pi": "show"}, "terms.delivery.pi"),
        ({"columns": "id"}, "columns"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"watermark": {"columns": {"amount": 9}}}, "decimals"),
        ({"watermark": {"amount": 2}}, "watermark"),
        ({"row_filter": [{"column": "x", "like": "%"}]}, "operators"),
        ({"row_filter": [{"column": "x", "eq": True}]}, "strings or numbers"),
        ({"row_filter": [{"column": "x", "eq": float("nan")}]}, "finite"),
    ],
)
def test_bad_delivery_terms_name_the_problem(value: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_delivery_terms(value)


def test_pseudonyms_are_keyed_per_contract() -> None:
    plan = compile_plan(terms(pi_treatment="pseudonymise"), SCHEMA, frozenset({"phone"}), {})
    con = duckdb.connect()
    con.register(
        "src",
        pa.table(
            {
                n: pa.array([None] if t == "VARCHAR" else [1], pa.string() if t == "VARCHAR" else pa.int64())
                for n, t in SCHEMA
            }
        ),
    )
    con.execute(
        "CREATE TABLE s2 AS "
        "SELECT 1::BIGINT id, 'a' name, '13800000000' phone, 'r' region, 1.0::DOUBLE amount"
    )
    a = con.execute(select_sql(plan, "s2", pseudonym_salt="aa", watermark_keys={})).fetchall()[0]
    b = con.execute(select_sql(plan, "s2", pseudonym_salt="bb", watermark_keys={})).fetchall()[0]
    nulls = con.execute(select_sql(plan, "src", pseudonym_salt="aa", watermark_keys={})).fetchall()[0]
    con.close()
    phone = [c for c, _ in plan.columns].index("phone")
    assert a[phone].startswith("pn_") and "13800000000" not in a[phone] and a[phone] != b[phone]
    assert nulls[phone] is None
