"""PI detection precision and recall on a labelled, realistic test set with decoys (issue 10 §6).

The generator builds columns of every content kind with realistic dirt (NULLs, typos, wrong check
digits, stray values) and decoy columns that look like identifiers but are not personal: 19-digit order
numbers (about 10 % pass Luhn by chance), courier tracking numbers, epoch timestamps, ID numbers with
wrong check digits, random 18-digit references, amounts and UUIDs. Column names carry no hints, so the
content alone decides. Per kind, precision must be >= 0.95 and recall >= 0.99.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stdnum import luhn

from datavalley.catalog import PIIKind, connect, open_source, scan_pii
from datavalley.catalog.pii import LABEL_SHARE

from .conftest import make_card, make_mobile, make_ric, make_uscc

TODAY = date(2026, 12, 4)
ROWS = 200
COLUMNS_PER_KIND = 12
CHUNK = 12
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

Gen = Callable[[random.Random], str]


def _plate(rnd: random.Random) -> str:
    head = rnd.choice(PROVINCES) + rnd.choice(PLATE_LETTERS)
    if rnd.random() < 0.3:  # new-energy plate
        return head + rnd.choice("DF") + "".join(rnd.choice("0123456789") for _ in range(5))
    return head + "".join(rnd.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(5))


def _email(rnd: random.Random) -> str:
    user = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789._") for _ in range(rnd.randint(3, 12)))
    user = user.strip("._") or "x"
    return f"{user}@{rnd.choice(['qq.com', '163.com', 'example.cn', 'corp.com.cn', 'gmail.com'])}"


def _coordinates(rnd: random.Random) -> str:
    return f"{rnd.uniform(18, 53):.6f},{rnd.uniform(73, 135):.6f}"


def _card(rnd: random.Random) -> str:
    return make_card(rnd, length=rnd.choice([16, 16, 19]))


POSITIVE: dict[PIIKind, Gen] = {
    PIIKind.CN_RIC: lambda r: make_ric(r),
    PIIKind.CN_USCC: lambda r: make_uscc(r),
    PIIKind.BANK_CARD: _card,
    PIIKind.CN_MOBILE: lambda r: r.choice(["", "+86", "86"]) + make_mobile(r),
    PIIKind.EMAIL: _email,
    PIIKind.CN_PLATE: _plate,
    PIIKind.COORDINATES: _coordinates,
}

# Typos and wrong check digits of each kind: the dirt a real column carries.
DIRT: dict[PIIKind, Gen] = {
    PIIKind.CN_RIC: lambda r: make_ric(r, valid=False),
    PIIKind.CN_USCC: lambda r: make_uscc(r, valid=False),
    PIIKind.BANK_CARD: lambda r: make_card(r, valid=False),
    PIIKind.CN_MOBILE: lambda r: "1" + "".join(r.choice("0123456789") for _ in range(r.choice([9, 11]))),
    PIIKind.EMAIL: lambda r: r.choice(["n/a", "none", "user@", "@example.com", "无"]),
    PIIKind.CN_PLATE: lambda r: r.choice(["无牌", "临时", "unknown"]),
    PIIKind.COORDINATES: lambda r: r.choice(["0,0", "unknown", "31.2,121.4"]),
}


def _digits(rnd: random.Random, n: int, first: str = "123456789") -> str:
    return rnd.choice(first) + "".join(rnd.choice("0123456789") for _ in range(n - 1))


def _order_number(rnd: random.Random) -> str:
    # e-commerce style: 19 digits (Taobao/JD order numbers), about 10 % pass Luhn by chance
    return _digits(rnd, 19, "3456")


DECOYS: dict[str, Gen] = {
    "order_19": _order_number,
    "order_18": lambda r: _digits(r, 18),
    "order_16": lambda r: _digits(r, 16, "3456"),
    "tracking_sf": lambda r: "SF" + _digits(r, 12),
    "tracking_num": lambda r: _digits(r, r.choice([12, 13, 15]), "34567"),
    "tracking_ems": lambda r: "E" + r.choice("ABCDEFGHJ") + _digits(r, 9) + "CN",
    "epoch_ms": lambda r: str(
        int((datetime(2020, 1, 1) + timedelta(seconds=r.randrange(10**8))).timestamp() * 1000)
    ),
    "epoch_s": lambda r: str(int((datetime(2020, 1, 1) + timedelta(seconds=r.randrange(10**8))).timestamp())),
    "ric_wrong_check": lambda r: make_ric(r, valid=False),
    "uscc_wrong_check": lambda r: make_uscc(r, valid=False),
    "card_wrong_check": lambda r: make_card(r, valid=False),
    "amount": lambda r: f"{r.uniform(0, 10**6):.2f}",
    "uuid": lambda r: str(uuid.UUID(int=r.getrandbits(128))),
    "sku": lambda r: f"SKU-{_digits(r, 8)}",
    "datetime": lambda r: (datetime(2024, 1, 1) + timedelta(minutes=r.randrange(10**6))).isoformat(sep=" "),
}


def _column(rnd: random.Random, good: Gen, bad: Gen | None) -> list[str | None]:
    nulls = rnd.uniform(0, 0.1)
    dirt = rnd.uniform(0, 1 - LABEL_SHARE - 0.08) if bad is not None else 0.0
    out: list[str | None] = []
    for _ in range(ROWS):
        x = rnd.random()
        out.append(None if x < nulls else (bad(rnd) if bad is not None and x < nulls + dirt else good(rnd)))
    return out


def _test_set(tmp_path: Path) -> tuple[list[Path], dict[str, PIIKind | None]]:
    rnd = random.Random(20261204)
    cols: dict[str, list[str | None]] = {}
    truth: dict[str, PIIKind | None] = {}
    for kind, good in POSITIVE.items():
        for i in range(COLUMNS_PER_KIND):
            name = f"c_{kind.value}_{i}"
            cols[name] = _column(rnd, good, DIRT[kind])
            truth[name] = kind
    for name, gen in DECOYS.items():
        for i in range(4):
            cols[f"d_{name}_{i}"] = _column(rnd, gen, None)
            truth[f"d_{name}_{i}"] = None
    # A contact column mixing mobiles and e-mails is labelled with both.
    cols["c_mixed"] = [make_mobile(rnd) if i % 3 else _email(rnd) for i in range(ROWS)]
    truth["c_mixed"] = None  # scored separately below
    # Several narrow files rather than one wide one: the scan's SQL grows with the columns it covers.
    names = list(cols)
    paths = []
    for i in range(0, len(names), CHUNK):
        path = tmp_path / f"labelled_{i // CHUNK}.parquet"
        chunk = names[i : i + CHUNK]
        pq.write_table(pa.table({k: pa.array(cols[k], pa.string()) for k in chunk}), path)
        paths.append(path)
    return paths, truth


def test_precision_and_recall_per_kind_on_realistic_decoys(tmp_path: Path) -> None:
    paths, truth = _test_set(tmp_path)
    labelled: dict[str, set[PIIKind]] = {}
    for path in paths:
        with connect(open_source(path)) as conn:
            report = scan_pii(conn, reference_date=TODAY, sample_rows=0)
        labelled.update({c.column: set(c.kinds) for c in report.columns})
    # the decoys are hard: e.g. the 19-digit order numbers really do pass Luhn about 10 % of the time
    order = [v for v in _column(random.Random(1), _order_number, None) if v]
    assert 0.05 < sum(luhn.is_valid(v) for v in order) / len(order) < 0.2
    scores = {}
    for kind in POSITIVE:
        tp = sum(1 for c, k in truth.items() if k is kind and kind in labelled.get(c, set()))
        fp = sum(
            1 for c, k in truth.items() if k is not kind and c != "c_mixed" and kind in labelled.get(c, set())
        )
        fn = sum(1 for c, k in truth.items() if k is kind and kind not in labelled.get(c, set()))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn)
        scores[kind.value] = (round(precision, 3), round(recall, 3))
        assert precision >= 0.95 and recall >= 0.99, (kind, precision, recall, fp, fn)
    decoys_labelled = {c: labelled[c] for c, k in truth.items() if c.startswith("d_") and c in labelled}
    assert decoys_labelled == {}, decoys_labelled
    assert {PIIKind.CN_MOBILE, PIIKind.EMAIL} <= labelled["c_mixed"]
    assert len(scores) == len(POSITIVE)


def test_a_file_of_order_numbers_holds_no_personal_information(tmp_path: Path) -> None:
    rnd = random.Random(5)
    path = tmp_path / "orders.parquet"
    orders = [_order_number(rnd) for _ in range(2000)]
    pq.write_table(pa.table({"order_no": orders, "amount": [rnd.random() * 100 for _ in orders]}), path)
    with connect(open_source(path)) as conn:
        report = scan_pii(conn, reference_date=TODAY, sample_rows=0)
    assert report.columns == () and report.estimated_individuals == 0 and not report.sensitive


def test_credit_codes_are_not_personal_and_individuals_count_valid_values_only(tmp_path: Path) -> None:
    rnd = random.Random(9)
    n = 1000
    ids = [make_ric(rnd) for _ in range(300)]
    cols = {
        "credit_code": [make_uscc(rnd) for _ in range(n)],
        # 300 distinct valid ID numbers repeated, plus 200 distinct wrong-check-digit ones (not people)
        "id_no": [ids[i % 300] if i < 800 else make_ric(rnd, valid=False) for i in range(n)],
    }
    path = tmp_path / "firms.parquet"
    pq.write_table(pa.table(cols), path)
    with connect(open_source(path)) as conn:
        report = scan_pii(conn, reference_date=TODAY, sample_rows=0)
    by = {c.column: c for c in report.columns}
    assert by["credit_code"].kinds == (PIIKind.CN_USCC,) and not by["credit_code"].personal
    assert "credit_code" not in report.personal_columns and "id_no" in report.personal_columns
    assert abs(report.estimated_individuals - 300) <= 0.05 * 300  # not 500: invalid IDs are no people


@pytest.mark.parametrize(
    ("born", "labelled"),
    [(date(1985, 5, 17), True), (date(1899, 12, 31), False), (date(2027, 1, 1), False)],
)
def test_id_numbers_need_a_birth_date_in_range(tmp_path: Path, born: date, labelled: bool) -> None:
    rnd = random.Random(3)
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"v": [make_ric(rnd, born=born) for _ in range(50)]}), path)
    with connect(open_source(path)) as conn:
        report = scan_pii(conn, reference_date=TODAY, sample_rows=0)
    assert (report.column("v") is not None and PIIKind.CN_RIC in report.column("v").kinds) is labelled  # type: ignore[union-attr]
