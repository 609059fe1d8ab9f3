"""PI detection: the SQL validators agree with python-stdnum and phonenumbers, and scan counts are exact."""

from __future__ import annotations

import random
import re
from datetime import date, timedelta
from pathlib import Path

import duckdb
import phonenumbers
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.cn import ric, uscc

from datavalley.catalog import PIIKind, connect, open_source, scan_pii
from datavalley.catalog.pii import classify_values, coordinate_axis, library_valid, name_hints, sql_valid

from .conftest import USCC_ALPHABET, make_card, make_mobile, make_ric, make_uscc

TODAY = date(2025, 6, 1)
RIC_RE = re.compile(r"[1-9][0-9]{16}[0-9Xx]")
PROVINCES = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51}
PROVINCES |= {52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def _stdnum_ric(value: str) -> bool:
    # python-stdnum's cn.ric checks except the birth-place table (documented difference).
    v = value.upper()
    if not RIC_RE.fullmatch(value):
        return False
    try:
        born = ric.get_birth_date(v)
    except Exception:
        return False
    # plus a birth date from 1900 to today and a real province code (GB/T 2260 first two digits)
    if not date(1900, 1, 1) <= born <= date.today() or int(v[:2]) not in PROVINCES:
        return False
    return v[-1] == ric.calc_check_digit(v)


def _mobile(value: str) -> bool:
    try:
        number = phonenumbers.parse(value, "CN")
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )


bodies = st.tuples(
    st.integers(100000, 999999),  # region
    st.integers(1, 9999),  # year, including absurd ones
    st.integers(0, 13),  # month, including invalid
    st.integers(0, 32),  # day, including invalid
    st.integers(0, 999),
).map(lambda t: f"{t[0]}{t[1]:04d}{t[2]:02d}{t[3]:02d}{t[4]:03d}")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(bodies, st.sampled_from("0123456789Xx")), min_size=20, max_size=60))
def test_ric_sql_agrees_with_stdnum(con: duckdb.DuckDBPyConnection, items: list[tuple[str, str]]) -> None:
    # Half of the values get the correct check digit, the rest whatever was drawn.
    values = [b + (ric.calc_check_digit(b + "0") if i % 2 else c) for i, (b, c) in enumerate(items)]
    assert sql_valid(con, PIIKind.CN_RIC, values) == [_stdnum_ric(v) for v in values]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(alphabet="0123456789Xx eE+-._x", min_size=16, max_size=19), min_size=10, max_size=40))
def test_ric_shape_without_regexp_equals_regexp(con: duckdb.DuckDBPyConnection, values: list[str]) -> None:
    # The SQL shape test casts instead of matching a regexp; it must accept exactly the regexp's strings
    # (unless a value is claimed first as a *valid* USCC or bank card).
    for value, (kind, valid) in zip(values, classify_values(con, values), strict=True):
        if RIC_RE.fullmatch(value):
            assert kind is PIIKind.CN_RIC or (kind in (PIIKind.CN_USCC, PIIKind.BANK_CARD) and valid), value
        else:
            assert kind is not PIIKind.CN_RIC, value


def test_ric_real_format_examples(con: duckdb.DuckDBPyConnection) -> None:
    good = ["360426199101010071", "11010519491231002X", "11010519491231002x", "440301201001015039"]
    bad = ["360426199101010072", "11010519491231002Y", "110105194912310021", "110105194902300025"]
    assert all(ric.is_valid(v) for v in good[:2])
    assert sql_valid(con, PIIKind.CN_RIC, good) == [True, True, True, _stdnum_ric(good[3])]
    assert sql_valid(con, PIIKind.CN_RIC, bad) == [False] * 4
    # Y is no ID check character, but a USCC-shaped code (invalid); 30 February is no birth date.
    assert classify_values(con, bad) == [
        (PIIKind.CN_RIC, False),
        (PIIKind.CN_USCC, False),
        (PIIKind.CN_RIC, False),
        (PIIKind.CN_RIC, False),
    ]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(13, 19), st.integers(0, 10**19)), min_size=20, max_size=60))
def test_luhn_sql_agrees_with_stdnum(con: duckdb.DuckDBPyConnection, items: list[tuple[int, int]]) -> None:
    values = []
    for i, (length, n) in enumerate(items):
        body = str(3 + n % 4) + str(n).zfill(length)[-(length - 2) :]
        values.append(body + (luhn.calc_check_digit(body) if i % 2 else str(n % 10)))
    # A valid ID number or USCC is claimed first, so those are not expected as cards.
    expected = [luhn.is_valid(v) and not _stdnum_ric(v) and not uscc.is_valid(v) for v in values]
    assert sql_valid(con, PIIKind.BANK_CARD, values) == expected


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(alphabet=USCC_ALPHABET + "ioz", min_size=10, max_size=10), min_size=20, max_size=50))
def test_uscc_sql_agrees_with_stdnum(con: duckdb.DuckDBPyConnection, tails: list[str]) -> None:
    rnd = random.Random(len(tails))
    values = []
    for i, tail in enumerate(tails):
        body = "9" + str(rnd.randrange(10)) + f"{rnd.randrange(10**6):06d}" + tail[:9]
        ok = i % 2 and all(ch in USCC_ALPHABET for ch in body)
        values.append(body + (uscc.calc_check_digit(body) if ok else tail[9]))
    expected = [uscc.is_valid(v) and not _stdnum_ric(v) for v in values]
    assert sql_valid(con, PIIKind.CN_USCC, values) == expected


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(10**9, 10**10 - 1), min_size=20, max_size=60))
def test_mobile_sql_agrees_with_phonenumbers(con: duckdb.DuckDBPyConnection, tails: list[int]) -> None:
    values = [f"1{t:010d}" for t in tails]
    values += ["+86" + values[0], "0086 " + values[1], "86-" + values[2]]
    assert sql_valid(con, PIIKind.CN_MOBILE, values) == [_mobile(v) for v in values]


def test_other_value_detectors(con: duckdb.DuckDBPyConnection) -> None:
    cases = {
        "alice@example.com": (PIIKind.EMAIL, True),
        "a.b+c@mail.example.cn": (PIIKind.EMAIL, True),
        "not@valid": (PIIKind.EMAIL, False),
        "京A12345": (PIIKind.CN_PLATE, True),
        "粤BD12345": (PIIKind.CN_PLATE, True),  # new-energy small car
        "沪A12345D": (PIIKind.CN_PLATE, True),  # new-energy large car
        "京I12345": (None, False),  # I is never used on plates
        "王小明": (None, False),
        "39.904211,116.407395": (PIIKind.COORDINATES, True),
        "39.90,116.40": (None, False),  # city-level precision is not precise location
        "hello, world and more": (None, False),
        "12345678901": (PIIKind.CN_MOBILE, False),  # a mobile's shape, but no CN mobile prefix 123
    }
    result = dict(zip(cases, classify_values(con, list(cases)), strict=True))
    for value, expected in cases.items():
        assert result[value] == expected, value


def test_name_hints() -> None:
    assert PIIKind.PERSON_NAME in name_hints("customer_name")
    assert PIIKind.PERSON_NAME in name_hints("name")
    assert PIIKind.PERSON_NAME in name_hints("患者姓名")
    assert PIIKind.PERSON_NAME in name_hints("lastName")
    assert PIIKind.PERSON_NAME not in name_hints("product_name")
    assert PIIKind.PERSON_NAME not in name_hints("企业名称")
    assert PIIKind.ADDRESS in name_hints("home_address")
    assert PIIKind.ADDRESS in name_hints("收货地址")
    assert PIIKind.ADDRESS not in name_hints("ip_address")
    assert PIIKind.AGE in name_hints("age") and PIIKind.AGE not in name_hints("page_views")
    assert PIIKind.HEALTH in name_hints("diagnosis") and PIIKind.HEALTH in name_hints("病历摘要")
    assert PIIKind.BIRTH_DATE in name_hints("date_of_birth")
    assert name_hints("city") == [] and name_hints("amount") == []
    assert coordinate_axis("pickup_lat") == "lat" and coordinate_axis("经度") == "lon"
    assert coordinate_axis("latency_ms") is None


def _dataset(tmp_path: Path) -> tuple[Path, dict[str, list[object]]]:
    rnd = random.Random(7)
    n = 400
    ric_col: list[object] = []
    for i in range(n):
        if i % 10 == 0:
            ric_col.append(make_ric(rnd, valid=False))  # 40 invalid check digits
        elif i % 10 == 1:
            ric_col.append(None)  # 40 nulls
        elif i % 10 == 2:
            born = TODAY - timedelta(days=365 * 10 + rnd.randrange(300))
            ric_col.append(make_ric(rnd, born=born))  # 40 minors (valid)
        else:
            ric_col.append(make_ric(rnd))  # 280 valid adults
    cols: dict[str, list[object]] = {
        "id_no": ric_col,
        "phone": [make_mobile(rnd) if i % 4 else "123" for i in range(n)],  # 300 mobiles
        "phone_int": [int(make_mobile(rnd)) for _ in range(n)],
        "card": [make_card(rnd, valid=i % 5 != 0) for i in range(n)],  # 80 bad Luhn
        "email": [f"user{i}@example.com" if i % 2 else None for i in range(n)],
        "plate": [rnd.choice(["京A12345", "粤BD12345", "沪C6789K"]) for _ in range(n)],
        "org_code": [make_uscc(rnd, valid=i % 8 != 0) for i in range(n)],
        "customer_name": [rnd.choice(["王伟", "李娜", "张敏"]) for _ in range(n)],
        "diagnosis": ["高血压" if i % 3 == 0 else None for i in range(n)],
        "age": [5 + (i % 60) for i in range(n)],  # ages 5..64: 9 of every 60 are < 14
        "lat": [31.2 + i / 1e5 for i in range(n)],
        "city": [rnd.choice(["北京", "上海"]) for _ in range(n)],
        "amount": [round(rnd.random() * 100, 2) for _ in range(n)],
    }
    path = tmp_path / "people.parquet"
    pq.write_table(pa.table(cols), path)
    return path, cols


def test_scan_counts_are_exact(tmp_path: Path) -> None:
    path, cols = _dataset(tmp_path)
    with connect(open_source(path)) as conn:
        report = scan_pii(conn, reference_date=TODAY)
    by = {c.column: c for c in report.columns}

    ids = by["id_no"]
    # An ID-shaped value (real province code and birth date) with a wrong check digit is an invalid ID
    # number, even where it happens to pass the USCC check or Luhn: it is never a card or a credit code.
    bad = [v for i, v in enumerate(cols["id_no"]) if i % 10 == 0]
    assert any(uscc.is_valid(v) or (str(v)[0] in "3456" and luhn.is_valid(v)) for v in bad)
    assert (ids.kind, ids.matches, ids.valid, ids.sensitive) == (PIIKind.CN_RIC, 360, 320, True)
    assert [d.kind for d in ids.detections if d.kind in (PIIKind.BANK_CARD, PIIKind.CN_USCC)] == []
    minors = next(d for d in ids.detections if d.kind is PIIKind.MINOR)
    assert minors.valid == 40 and PIIKind.MINOR in ids.kinds

    assert (by["phone"].kind, by["phone"].matches, by["phone"].valid) == (PIIKind.CN_MOBILE, 300, 300)
    assert not by["phone"].sensitive
    assert (by["phone_int"].kind, by["phone_int"].valid) == (PIIKind.CN_MOBILE, 400)
    assert (by["card"].kind, by["card"].matches, by["card"].valid) == (PIIKind.BANK_CARD, 400, 320)
    assert by["card"].sensitive
    assert (by["email"].kind, by["email"].valid) == (PIIKind.EMAIL, 200)
    assert (by["plate"].kind, by["plate"].valid) == (PIIKind.CN_PLATE, 400)
    org = by["org_code"]
    assert (org.kind, org.matches, org.valid, org.personal) == (PIIKind.CN_USCC, 400, 350, False)
    assert by["customer_name"].kind is PIIKind.PERSON_NAME
    assert (by["diagnosis"].kind, by["diagnosis"].valid, by["diagnosis"].sensitive) == (
        PIIKind.HEALTH,
        134,
        True,
    )
    age_minors = next(d for d in by["age"].detections if d.kind is PIIKind.MINOR)
    assert age_minors.valid == sum(1 for a in cols["age"] if a < 14)  # type: ignore[operator]
    assert by["lat"].kind is PIIKind.COORDINATES and by["lat"].sensitive
    assert "city" not in by and "amount" not in by

    assert report.sensitive
    assert "org_code" not in report.personal_columns
    assert report.personal_columns >= {"id_no", "phone", "card", "email", "customer_name", "diagnosis"}
    # The identifier column with most distinct valid values decides: 400 distinct mobiles in phone_int.
    distinct_phones = len(set(cols["phone_int"]))
    assert abs(report.estimated_individuals - distinct_phones) <= 0.03 * distinct_phones


def test_cross_check_finds_no_disagreement(tmp_path: Path) -> None:
    path, _ = _dataset(tmp_path)
    with connect(open_source(path)) as conn:
        report = scan_pii(conn, reference_date=TODAY, sample_rows=150)
    checks = {(c.column, x.kind): x for c in report.columns for x in c.cross_checks}
    assert set(checks) >= {
        ("id_no", PIIKind.CN_RIC),
        ("phone", PIIKind.CN_MOBILE),
        ("card", PIIKind.BANK_CARD),
        ("org_code", PIIKind.CN_USCC),
    }
    for check in checks.values():
        assert check.disagreements == 0
        assert 0 < check.checked <= 150
        assert check.library_valid <= check.checked
    assert checks[("card", PIIKind.BANK_CARD)].sql_valid < checks[("card", PIIKind.BANK_CARD)].checked


def test_no_pi_in_plain_table(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("sku,qty,price\nA-1,3,9.99\nB-2,1,19.5\n", encoding="utf-8")
    with connect(open_source(path)) as conn:
        report = scan_pii(conn)
    assert report.columns == () and not report.sensitive and report.estimated_individuals == 0


# Region codes python-stdnum 2.2's birth-place table does not resolve to a county: ``cn.ric.validate``
# raises KeyError (from get_birth_place) instead of a ValidationError for them.
UNLISTED_REGIONS = ("110300", "110001", "440399")


def _unlisted_rics(count: int) -> list[str]:
    values = []
    for i in range(count):
        body = f"{UNLISTED_REGIONS[i % len(UNLISTED_REGIONS)]}{19800101 + i % 28:08d}{i % 1000:03d}"
        values.append(body + ric.calc_check_digit(body + "0"))
    return values


def _library_verdict(value: str) -> bool:
    try:
        ric.validate(value)
    except Exception:  # KeyError from get_birth_place as well as the library's ValidationError
        return False
    return True


def test_library_exceptions_count_as_invalid(con: duckdb.DuckDBPyConnection) -> None:
    values = _unlisted_rics(6)
    # Well-formed numbers with correct check digits: the SQL validator (no birth-place table) accepts them.
    assert sql_valid(con, PIIKind.CN_RIC, values) == [True] * len(values)
    verdicts = [library_valid(PIIKind.CN_RIC, v) for v in values]
    assert verdicts == [_library_verdict(v) for v in values]
    assert all(isinstance(v, bool) for v in verdicts)
    for kind in (PIIKind.CN_RIC, PIIKind.CN_USCC, PIIKind.BANK_CARD, PIIKind.CN_MOBILE):
        assert library_valid(kind, "") is False and library_valid(kind, "x" * 18) is False, kind


def test_cross_check_survives_library_exceptions(tmp_path: Path) -> None:
    rnd = random.Random(5)
    unlisted = _unlisted_rics(60)
    listed = [make_ric(rnd) for _ in range(40)]
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"id_no": unlisted + listed}), path)
    with connect(open_source(path)) as conn:
        report = scan_pii(conn, reference_date=TODAY, sample_rows=1000)
    (column,) = report.columns
    assert (column.kind, column.matches, column.valid) == (PIIKind.CN_RIC, 100, 100)
    (check,) = column.cross_checks
    assert (check.kind, check.checked, check.sql_valid, check.disagreements) == (PIIKind.CN_RIC, 100, 100, 0)
    # The library's full verdict includes the birth place: the listed regions pass, unlisted ones do not.
    assert check.library_valid == sum(_library_verdict(v) for v in unlisted + listed)
    assert check.library_valid < check.checked
