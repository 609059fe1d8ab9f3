"""The allowlist accepts exactly the documented grammar and refuses everything else, saying why."""

from __future__ import annotations

import pytest

from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.privacy import compile_query

from .conftest import SCHEMA, row_rules, unit_rules


def _compile(sql: str, *, unit: bool = False, dp: bool = True) -> object:
    rules = unit_rules() if unit else row_rules()
    if not dp:
        rules = (unit_rules if unit else row_rules)(require_dp=False)
        return compile_query(sql, SCHEMA, rules)
    return compile_query(sql, SCHEMA, rules, epsilon=1.0)


ACCEPTED = [
    "SELECT COUNT(*) FROM trips",
    "select count(*) from TRIPS where Province = 'GD'",
    "SELECT province, COUNT(*) AS n, SUM(freight_price), AVG(distance) FROM trips GROUP BY province",
    "SELECT t.province AS p, COUNT(1) FROM trips AS t GROUP BY p",
    "SELECT province, month, COUNT(*) FROM trips GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5 OFFSET 1",
    "SELECT province, COUNT(*) n FROM trips GROUP BY province HAVING n > 10 AND COUNT(*) < 10000",
    "SELECT province, COUNT(distance) FROM trips WHERE distance BETWEEN 1 AND 100 GROUP BY province",
    "SELECT region, COUNT(*) FROM trips t JOIN provinces p ON t.province = p.code GROUP BY region",
    "SELECT COUNT(*) FROM trips WHERE NOT (month IN (1, 2) OR tag LIKE 'a%') AND freight_price IS NOT NULL",
    "SELECT COUNT(*) FROM trips WHERE ABS(distance - 100) < 5 AND LOWER(province) = 'gd'",
    "SELECT COUNT(*) FROM trips WHERE trip_date >= '2024-06-01' AND COALESCE(tag, 'x') <> 'y'",
    "SELECT COUNT(*) FROM trips WHERE -distance * 2 + 1 < 0",
    "SELECT province FROM trips GROUP BY province",
    "SELECT COUNT(*) FROM trips -- a trailing comment",
    "SELECT COUNT(*) FROM trips /* ; DROP TABLE trips */;",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_accepted(sql: str) -> None:
    _compile(sql)


def test_unit_grammar_accepts_distinct_units_and_unit_joins() -> None:
    _compile(
        "SELECT month, COUNT(DISTINCT driver_id), AVG(freight_price) FROM trips GROUP BY month", unit=True
    )
    _compile(
        "SELECT band, COUNT(*) FROM trips t JOIN drivers d ON t.driver_id = d.driver_id GROUP BY band",
        unit=True,
    )


REFUSED_POLICY = [
    ("SELECT * FROM trips", "SELECT \\*"),
    ("SELECT COUNT(*) FROM trips UNION SELECT COUNT(*) FROM trips", "UNION"),
    ("SELECT COUNT(*) FROM trips; SELECT COUNT(*) FROM trips", "exactly one statement"),
    ("WITH t AS (SELECT * FROM trips) SELECT COUNT(*) FROM t", "WITH"),
    ("SELECT COUNT(*) FROM (SELECT * FROM trips)", "subqueries"),
    ("SELECT COUNT(*) FROM trips WHERE province IN (SELECT code FROM provinces)", "subqueries"),
    ("SELECT COUNT(*) FROM trips WHERE EXISTS (SELECT 1)", "subqueries"),
    ("SELECT COUNT(*) FROM trips WHERE province = (SELECT 'GD')", "subqueries"),
    ("SELECT MIN(distance) FROM trips", "MIN, MAX"),
    ("SELECT MAX(distance) FROM trips", "MIN, MAX"),
    ("SELECT MEDIAN(distance) FROM trips", "quantiles"),
    ("SELECT quantile_cont(distance, 0.5) FROM trips", "quantiles"),
    ("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY distance) FROM trips", "quantiles"),
    ("SELECT COUNT(DISTINCT province) FROM trips", "DISTINCT"),
    ("SELECT SUM(distance * 2) FROM trips", "one column"),
    ("SELECT SUM(DISTINCT distance) FROM trips", "DISTINCT"),
    ("SELECT SUM(month) FROM trips", "no clamping range"),
    ("SELECT COUNT(*) OVER () FROM trips", "window"),
    ("SELECT COUNT(*) FILTER (WHERE month = 1) FROM trips", "FILTER"),
    ("SELECT SUM(distance) / COUNT(*) FROM trips", "not allowed"),
    ("SELECT DISTINCT province FROM trips", "DISTINCT"),
    ("SELECT province, COUNT(*) FROM trips GROUP BY ROLLUP (province)", "ROLLUP"),
    ("SELECT province, COUNT(*) FROM trips GROUP BY province HAVING SUM(distance) > 1", "not in the SELECT"),
    ("SELECT province, COUNT(*) FROM trips GROUP BY province ORDER BY AVG(distance)", "not in the SELECT"),
    ("SELECT province, COUNT(*) FROM trips GROUP BY province ORDER BY LOWER(province)", "ORDER BY"),
    ("SELECT COUNT(*) FROM trips LIMIT 1 + 1", "LIMIT"),
    ("SELECT COUNT(*) FROM trips WHERE CAST(tag AS INTEGER) = 1", "CAST"),
    ("SELECT COUNT(*) FROM trips WHERE distance / month > 1", "division"),
    ("SELECT COUNT(*) FROM trips WHERE month % 2 = 0", "MOD"),
    ("SELECT COUNT(*) FROM trips WHERE province = ?", "placeholder"),
    ("SELECT COUNT(*) FROM trips WHERE regexp_matches(province, 'G.*')", "REGEXP"),
    ("SELECT COUNT(*) FROM trips t, provinces p", "JOIN needs ON"),
    ("SELECT COUNT(*) FROM trips t CROSS JOIN provinces p", "INNER JOIN"),
    ("SELECT COUNT(*) FROM trips t LEFT JOIN provinces p ON t.province = p.code", "INNER JOIN"),
    ("SELECT COUNT(*) FROM trips t JOIN provinces p USING (code)", "USING"),
    ("SELECT COUNT(*) FROM trips t JOIN provinces p ON t.tag = p.code", "not a declared join key"),
    ("SELECT COUNT(*) FROM trips t JOIN provinces p ON t.province = p.code OR 1 = 1", "equalities"),
    ("SELECT COUNT(*) FROM trips t JOIN provinces p ON t.province = 'GD'", "equalities"),
    ("SELECT COUNT(*) FROM main.trips", "qualified"),
    ("SELECT COUNT(*) FROM trips AS t(a, b)", "column aliases"),
    ("SELECT COUNT(*) FROM trips TABLESAMPLE 10%", "SAMPLE|modifiers"),
    ("SELECT 1", "must read FROM"),
    ("SELECT COUNT(*) FROM trips QUALIFY COUNT(*) > 1", "QUALIFY"),
]


@pytest.mark.parametrize(("sql", "reason"), REFUSED_POLICY)
def test_refused_with_reason(sql: str, reason: str) -> None:
    with pytest.raises(PolicyViolation, match=reason):
        _compile(sql)


REFUSED_UNIT = [
    ("SELECT driver_id, COUNT(*) FROM trips GROUP BY driver_id", "per-unit"),
    ("SELECT COUNT(*) FROM trips WHERE driver_id = 7", "privacy unit column"),
    ("SELECT SUM(driver_id) FROM trips", "privacy unit column"),
    ("SELECT COUNT(driver_id) FROM trips", "privacy unit column"),
    (
        "SELECT band, COUNT(*) FROM trips t JOIN drivers d ON t.province = d.band GROUP BY band",
        "declared join",
    ),
]


@pytest.mark.parametrize(("sql", "reason"), REFUSED_UNIT)
def test_unit_column_is_only_counted(sql: str, reason: str) -> None:
    with pytest.raises(PolicyViolation, match=reason):
        _compile(sql, unit=True)


def test_private_tables_must_join_on_the_unit() -> None:
    rules = unit_rules(join_keys=(("trips.province", "drivers.band"),))
    with pytest.raises(PolicyViolation, match="joined on the privacy unit"):
        compile_query(
            "SELECT COUNT(*) FROM trips t JOIN drivers d ON t.province = d.band", SCHEMA, rules, epsilon=1.0
        )


def test_row_level_rules_refuse_two_private_tables() -> None:
    with pytest.raises(PolicyViolation, match="only one private table"):
        _compile("SELECT COUNT(*) FROM trips t JOIN drivers d ON t.driver_id = d.driver_id")


INVALID = [
    ("SELEC COUNT(*) FROM trips", "syntax"),
    ("SELECT COUNT(*) FROM", "syntax"),
    ("SELECT COUNT(*) FROM nowhere", "unknown table"),
    ("SELECT COUNT(*) FROM '/etc/passwd'", "unknown table"),
    ("SELECT COUNT(*) FROM trips WHERE nope = 1", "unknown column"),
    (
        "SELECT COUNT(*) FROM trips t JOIN drivers d ON t.driver_id = d.driver_id WHERE driver_id = 1",
        "ambiguous",
    ),
    ("SELECT COUNT(*) FROM trips WHERE province = 1", "compares text with num"),
    ("SELECT COUNT(*) FROM trips WHERE month = 'x'", "compares num with text"),
    ("SELECT COUNT(*) FROM trips WHERE distance", "condition"),
    ("SELECT province, COUNT(*) FROM trips", "GROUP BY"),
    ("SELECT COUNT(*) FROM trips GROUP BY province", "must also be selected"),
    ("SELECT COUNT(*) AS n, SUM(distance) AS n FROM trips", "used twice"),
    ("SELECT SUM(province) FROM trips", "numeric"),
    ("SELECT COUNT(*) FROM trips t JOIN trips t ON t.trip_id = t.trip_id", "alias"),
]


@pytest.mark.parametrize(("sql", "reason"), INVALID)
def test_invalid_input(sql: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        _compile(sql)


def test_refusal_names_the_construct() -> None:
    with pytest.raises(PolicyViolation) as info:
        _compile("SELECT COUNT(*) FROM trips WHERE getenv('HOME') = 'x'")
    assert "GETENV" in info.value.message
    assert info.value.details["construct"].lower().startswith("getenv")


def test_exact_mode_does_not_need_clamps() -> None:
    rules = row_rules(require_dp=False, clamps={})
    compile_query("SELECT SUM(month), AVG(distance) FROM trips", SCHEMA, rules)
    with pytest.raises(PolicyViolation, match="no clamping range"):
        compile_query("SELECT SUM(month) FROM trips", SCHEMA, row_rules(clamps={}), epsilon=1.0)


def test_overlong_sql_is_refused() -> None:
    with pytest.raises(InvalidInput, match="characters"):
        _compile("SELECT COUNT(*) FROM trips WHERE " + " OR ".join(["month = 1"] * 3000))
