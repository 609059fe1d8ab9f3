"""Side channels: for any accepted query, whether it succeeds, its error text and its cost are identical on
two data sets that differ in one privacy unit (docs/PRIVATE_SQL.md, "Side channels").

The neighbouring data sets are the trips product with and without EXTREME_DRIVER, a unit whose rows hold
the extreme values of every type (int64 bounds, ±1.7e308, NaN, infinity, 0001-01-01, 9999-12-31...), so
that any expression able to fail at run time fails on its rows. Every query goes through the whole
pipeline (compile, the empty-relation check, the engine on the real data); the outcome is compared.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datavalley.errors import DatavalleyError
from datavalley.privacy import DuckDBEngine, PrivacyRules, compile_query, release

from .conftest import SCHEMA, row_rules, unit_rules

Outcome = tuple[Any, ...]


def outcome(sql: str, engine: DuckDBEngine, rules: PrivacyRules) -> Outcome:
    """``("refused", class, message, cost)`` before any data is read, ``("failed", ...)`` on the data,
    or ``("ok", cost, columns)``."""
    try:
        q = compile_query(sql, SCHEMA, rules, epsilon=1.0)
        engine.check(q)
    except DatavalleyError as exc:
        return ("refused", type(exc).__name__, exc.message)
    try:
        answer = release(q, engine.run(q), max_rows=50)
    except DatavalleyError as exc:
        return ("failed", type(exc).__name__, exc.message)
    return ("ok", q.cost, q.columns, q.digest, answer.cost)


def both(sql: str, engine: DuckDBEngine, neighbour_engine: DuckDBEngine, rules: PrivacyRules) -> Outcome:
    a = outcome(sql, engine, rules)
    b = outcome(sql, neighbour_engine, rules)
    assert a == b, f"{sql!r}: {a} on D, {b} on D + one unit"
    assert a[0] != "failed", f"{sql!r} was accepted and then failed on the data: {a}"
    return a


W = "SELECT COUNT(*) AS n FROM trips WHERE "
ZZ = W + "province = 'ZZ' AND "  # only the extreme unit's rows reach the rest of the WHERE

OR_CHAIN = lambda n: W + " OR ".join(f"month = {i}" for i in range(n))  # noqa: E731
PLUS_CHAIN = lambda n: W + " + ".join(["month"] * n) + " > 0"  # noqa: E731

#: (query, expected: "ok" or "refused"). Each is also checked to behave alike on both data sets.
ATTACKS: list[tuple[str, str]] = [
    # out-of-range integers and overflowing literal arithmetic
    (ZZ + "month + 9223372036854775807 > 0", "ok"),
    (ZZ + "month * 99999999999999999999999 > 0", "ok"),
    (ZZ + "month = 99999999999999999999999999999999999999999", "ok"),
    (ZZ + "month = -9223372036854775809", "ok"),
    (ZZ + "month > 9223372036854775807 + 9223372036854775807", "ok"),
    (ZZ + "9223372036854775807 + 1 > month", "ok"),
    (ZZ + "-(-9223372036854775808) > month", "ok"),
    (ZZ + "month > 1e309", "refused"),
    (ZZ + "month = 1e999999", "refused"),
    (ZZ + "month = " + "9" * 400, "refused"),
    (ZZ + "month > 1e308 * 10", "refused"),
    (ZZ + "month > -(1e308 * 10)", "refused"),
    (ZZ + "month > 1.7976931348623157e308 + 1.7976931348623157e308", "refused"),
    (ZZ + "month > (1e200 * 1e200) - 1", "refused"),
    (ZZ + "month * month * month * month > 0", "ok"),
    (ZZ + "freight_price - freight_price = 0", "ok"),
    (ZZ + "freight_price * 1e308 > 1e308", "ok"),
    (ZZ + "ABS(month) > 0", "ok"),
    (ZZ + "-month < 0", "ok"),
    (ZZ + "month IN (1, 2, 99999999999999999999)", "ok"),
    (ZZ + "month BETWEEN -1e308 AND 1e308", "ok"),
    (ZZ + "trip_id * 9223372036854775807 * 9223372036854775807 < 0", "ok"),
    # decimal literals that would force a narrowing cast
    (ZZ + "freight_price = 1.23456789012345678901234567890123456789", "ok"),
    (ZZ + "month = 1.23456789012345678901234567890123456789", "ok"),
    (ZZ + "freight_price > 0.000000000000000000000000000000000000001", "ok"),
    (ZZ + "distance > 1e-400", "ok"),
    (ZZ + "month = 99999999999999999999999999999999999999.5", "ok"),
    (ZZ + "COALESCE(month, 1.5) > 0", "ok"),
    (ZZ + "COALESCE(freight_price, 12345678901234567890123456789.123456789) > 0", "ok"),
    # impossible dates and times
    (ZZ + "trip_date = '2024-02-30'", "refused"),
    (ZZ + "trip_date > '2023-02-29'", "refused"),
    (ZZ + "trip_date = '2024-13-01'", "refused"),
    (ZZ + "trip_date = '2024-00-10'", "refused"),
    (ZZ + "trip_date < '99999-01-01'", "refused"),
    (ZZ + "trip_date = 'yesterday'", "refused"),
    (ZZ + "trip_date = '2024-02-29 00:00:00'", "refused"),
    (ZZ + "trip_date BETWEEN '2024-01-01' AND '2024-02-31'", "refused"),
    (ZZ + "trip_date IN ('2024-01-01', '2024-04-31')", "refused"),
    (ZZ + "trip_date > DATE '2024-02-30'", "refused"),
    (ZZ + "trip_date > TIMESTAMP '2024-01-01 25:00:00'", "refused"),
    (ZZ + "COALESCE(trip_date, '2024-02-30') IS NULL", "refused"),
    (ZZ + "trip_date = 20240101", "refused"),
    (ZZ + "trip_date + 1 > trip_date", "refused"),
    (ZZ + "trip_date = '2024-02-29'", "ok"),
    (ZZ + "trip_date > '0001-01-01' AND trip_date < '9999-12-31'", "ok"),
    (ZZ + "'2024-02-29' <= trip_date", "ok"),
    # division by zero, modulo
    (ZZ + "month / 0 > 1", "refused"),
    (ZZ + "month / month > 1", "refused"),
    (ZZ + "month % 0 = 1", "refused"),
    (ZZ + "1 / 0 > month", "refused"),
    (ZZ + "month // 2 = 1", "refused"),
    # casts
    (ZZ + "CAST(tag AS INTEGER) = 1", "refused"),
    (ZZ + "TRY_CAST(tag AS INTEGER) = 1", "refused"),
    (ZZ + "tag::INTEGER = 1", "refused"),
    (ZZ + "CAST(month AS TINYINT) = 1", "refused"),
    (ZZ + "CAST(freight_price AS DECIMAL(4, 2)) = 1", "refused"),
    (ZZ + "month = '1'", "refused"),
    (ZZ + "tag = 1", "refused"),
    (ZZ + "month IN (1, 'a')", "refused"),
    (ZZ + "month BETWEEN 1 AND '2'", "refused"),
    (ZZ + "tag IS TRUE", "refused"),
    (ZZ + "month IS TRUE", "refused"),
    # string functions on numbers, regular expressions, other functions
    (ZZ + "LOWER(month) = 'a'", "refused"),
    (ZZ + "UPPER(freight_price) = '1'", "refused"),
    (ZZ + "regexp_matches(tag, '(')", "refused"),
    (ZZ + "tag SIMILAR TO '('", "refused"),
    (ZZ + "tag ~ '('", "refused"),
    (ZZ + "tag LIKE 'x%' ESCAPE '\\'", "refused"),
    (ZZ + "length(tag) > 3", "refused"),
    (ZZ + "tag = CHR(65)", "refused"),
    (ZZ + "province || 'x' = 'ZZx'", "refused"),
    (ZZ + "tag LIKE '%' || 'x'", "refused"),
    (ZZ + "EXTRACT(year FROM trip_date) = 2024", "refused"),
    (ZZ + "CASE WHEN month > 0 THEN 1 ELSE 0 END = 1", "refused"),
    (ZZ + "lower(tag) LIKE '%\\'", "ok"),
    (ZZ + "tag LIKE '%[%'", "ok"),
    (ZZ + "tag ILIKE '%\\_%'", "ok"),
    (ZZ + "NOT (month = 1)", "ok"),
    # huge IN lists, deep nesting, long + and OR chains
    (ZZ + "month IN (" + ", ".join(str(i) for i in range(1001)) + ")", "refused"),
    (ZZ + "month IN (" + ", ".join(str(i) for i in range(1000)) + ")", "ok"),
    (W + "(" * 200 + "month = 1" + ")" * 200, "refused"),
    (W + "(" * 40 + "month = 1" + ")" * 40, "ok"),
    (W + "NOT " * 150 + "month = 1", "refused"),
    (OR_CHAIN(300), "refused"),
    (OR_CHAIN(90), "ok"),
    (PLUS_CHAIN(400), "refused"),
    (PLUS_CHAIN(90), "ok"),
    (W + " AND ".join(["(month = 1 OR month = 2)"] * 120), "refused"),
    # binary-search combinations: two different failures would tell a row's value
    (ZZ + "(month > 4611686018427387904 OR trip_date = '2024-02-30')", "refused"),
    (ZZ + "(month > 4611686018427387904 AND month * 2 > 0) OR freight_price * 1e308 > 1e308", "ok"),
    (ZZ + "month > 4611686018427387904 AND month + 4611686018427387904 > 0", "ok"),
    (ZZ + "month > 4611686018427387904 AND CAST(month AS INTEGER) > 0", "refused"),
    # HAVING on date keys, division by zero and decimals in HAVING, group caps, LIMIT
    (
        "SELECT trip_date, COUNT(*) AS n FROM trips GROUP BY trip_date HAVING trip_date > '2024-06-01'",
        "ok",
    ),
    (
        "SELECT trip_date, COUNT(*) AS n FROM trips GROUP BY trip_date HAVING trip_date > '2024-06-31'",
        "refused",
    ),
    ("SELECT trip_date, COUNT(*) AS n FROM trips GROUP BY trip_date HAVING trip_date > 5", "refused"),
    ("SELECT province, COUNT(*) AS n FROM trips GROUP BY province HAVING n / 0 > 1", "ok"),
    ("SELECT province, COUNT(*) AS n FROM trips GROUP BY province HAVING n * 1e308 * 10 > 1", "ok"),
    ("SELECT province, COUNT(*) AS n FROM trips GROUP BY province HAVING n > 1e308 * 10", "refused"),
    ("SELECT tag, COUNT(*) AS n FROM trips GROUP BY tag", "ok"),
    ("SELECT month, COUNT(*) AS n FROM trips GROUP BY month", "ok"),
    ("SELECT trip_date, COUNT(*) AS n FROM trips GROUP BY trip_date ORDER BY n DESC LIMIT 3", "ok"),
    ("SELECT province, COUNT(*) AS n FROM trips GROUP BY province LIMIT 99999999999999999999", "refused"),
    ("SELECT province, COUNT(*) AS n FROM trips GROUP BY province LIMIT 1 OFFSET 5", "ok"),
    ("SELECT SUM(freight_price) AS s FROM trips WHERE freight_price > 1.7976931348623157e308", "ok"),
    ("SELECT AVG(distance) AS a FROM trips WHERE distance < -1.7976931348623157e308", "ok"),
    ("SELECT SUM(freight_price) AS s, AVG(distance) AS a FROM trips WHERE province = 'ZZ'", "ok"),
    ("SELECT COUNT(*) AS n FROM trips WHERE month = ?", "refused"),
    (W + "tag = '\ud800'", "refused"),  # a lone surrogate (valid in JSON text) is no crash
    (W + "tag = '\x00'", "ok"),
    (
        "SELECT COUNT(*) AS n FROM trips "
        + " ".join(f"JOIN drivers d{i} ON trips.driver_id = d{i}.driver_id" for i in range(20)),
        "refused",
    ),
    ("SELECT COUNT(*) AS n FROM trips WHERE month = 1; SELECT 1", "refused"),
    ("SELECT COUNT(*) AS n FROM trips WHERE month IN (SELECT month FROM trips)", "refused"),
]


@pytest.mark.parametrize("rules_kind", ["unit", "row"])
def test_known_attacks_behave_identically_on_neighbouring_data(
    engine: DuckDBEngine, neighbour_engine: DuckDBEngine, rules_kind: str
) -> None:
    rules = unit_rules() if rules_kind == "unit" else row_rules()
    wrong = []
    for sql, expected in ATTACKS:
        got = both(sql, engine, neighbour_engine, rules)
        if got[0] != expected:
            wrong.append((sql[:120], expected, got))
    assert not wrong, wrong


def test_refusals_are_clear_and_never_crash(engine: DuckDBEngine) -> None:
    checks = {
        ZZ + "trip_date = '2024-02-30'": "not a valid date",
        ZZ + "month > 1e308 * 10": "overflows",
        ZZ + "month > 1e309": "out of range",
        OR_CHAIN(300): "nested too deeply",
        PLUS_CHAIN(400): "nested too deeply",
        ZZ + "month IN (" + ", ".join(str(i) for i in range(1001)) + ")": "at most 1000",
    }
    for sql, text in checks.items():
        result = outcome(sql, engine, unit_rules())
        assert result[0] == "refused" and result[1] == "InvalidInput" and text in result[2], result


# --- property: random queries with adversarial literals ---------------------------------------------

NUM_COLUMNS = ("month", "freight_price", "distance", "trip_id")
NUM_LITERALS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        [
            "0",
            "-0",
            "1e308",
            "1e309",
            "2147483648",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "0.000000000000000000000000000000000000001",
            "99999999999999999999999999999999999999.5",
            "1.7976931348623157e308",
            "4611686018427387904",
        ]
    ),
)
DATE_TEXT = st.one_of(
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(["2024-02-30", "2023-02-29", "2024-13-01", "0000-01-01", "99999-01-01", "", "now"]),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z"),
)
TEXT_LITERAL = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _num_expr() -> st.SearchStrategy[str]:
    atom = st.one_of(st.sampled_from(NUM_COLUMNS), NUM_LITERALS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda e: f"-({e})"),
            inner.map(lambda e: f"ABS({e})"),
            inner.map(lambda e: f"CAST({e} AS INTEGER)"),
            st.tuples(inner, inner).map(lambda t: f"COALESCE({t[0]}, {t[1]})"),
        )

    return st.recursive(atom, extend, max_leaves=4)


def _predicate() -> st.SearchStrategy[str]:
    num = _num_expr()
    cmp = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
    text_col = st.sampled_from(["province", "tag", "LOWER(tag)", "UPPER(province)"])
    return st.one_of(
        st.tuples(num, cmp, num).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(cmp, DATE_TEXT).map(lambda t: f"trip_date {t[0]} {_quote(t[1])}"),
        st.tuples(DATE_TEXT, DATE_TEXT).map(lambda t: f"trip_date BETWEEN {_quote(t[0])} AND {_quote(t[1])}"),
        st.tuples(text_col, cmp, TEXT_LITERAL).map(lambda t: f"{t[0]} {t[1]} {_quote(t[2])}"),
        st.tuples(text_col, TEXT_LITERAL).map(lambda t: f"{t[0]} LIKE {_quote(t[1])}"),
        st.tuples(st.sampled_from(NUM_COLUMNS), st.lists(NUM_LITERALS, min_size=1, max_size=5)).map(
            lambda t: f"{t[0]} IN ({', '.join(t[1])})"
        ),
        st.tuples(num, NUM_LITERALS, NUM_LITERALS).map(lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"),
        st.tuples(st.sampled_from([*NUM_COLUMNS, "tag", "trip_date"]), st.sampled_from(["NULL", "TRUE"])).map(
            lambda t: f"{t[0]} IS {t[1]}"
        ),
        st.tuples(text_col, num).map(lambda t: f"{t[0]} = {t[1]}"),
    )


def _where() -> st.SearchStrategy[str]:
    return st.recursive(
        _predicate(),
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda e: f"NOT ({e})"),
        ),
        max_leaves=3,
    )


SELECTS = st.sampled_from(
    [
        "SELECT COUNT(*) AS n FROM trips",
        "SELECT province, COUNT(*) AS n, SUM(freight_price) AS s FROM trips",
        "SELECT AVG(distance) AS a, COUNT(DISTINCT driver_id) AS u FROM trips",
    ]
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(select=SELECTS, where=_where(), zz=st.booleans())
def test_outcome_is_identical_on_neighbouring_data_sets(
    engine: DuckDBEngine, neighbour_engine: DuckDBEngine, select: str, where: str, zz: bool
) -> None:
    condition = f"province = 'ZZ' AND ({where})" if zz else where
    group = " GROUP BY province" if select.startswith("SELECT province") else ""
    both(f"{select} WHERE {condition}{group}", engine, neighbour_engine, unit_rules())
