"""The watermark as properties: bounded distortion, survival of column/row subsets, re-sorting and CSV
round-trips, no attribution without the mark, and the stated false-attribution bound."""

from __future__ import annotations

import math
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datavalley.delivery.policy import watermark_sql
from datavalley.delivery.watermark import (
    ALPHA,
    Candidate,
    binomial_tail,
    column_key,
    expected_bit,
    trace,
)

SECRET = bytes(range(32))
COLUMNS = (("amount", 2), ("count", 0))


def _mark(values: list[tuple[float, int]], contract: str, recipient: str) -> list[tuple[float, int]]:
    con = duckdb.connect()
    data = pa.table(
        {
            "amount": pa.array([a for a, _ in values], pa.float64()),
            "count": pa.array([c for _, c in values], pa.int64()),
        }
    )
    con.register("t", data)
    ka = column_key(SECRET, contract, recipient, "amount")
    kc = column_key(SECRET, contract, recipient, "count")
    sql = (
        f"SELECT {watermark_sql('amount', 'DOUBLE', 2, ka)}, {watermark_sql('count', 'BIGINT', 0, kc)} FROM t"
    )
    out = [(float(a), int(c)) for a, c in con.execute(sql).fetchall()]
    con.close()
    return out


def _csv(path: Path, rows: list[tuple[float, int]], header: tuple[str, ...] = ("amount", "count")) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(",".join(header) + "\n")
        for row in rows:
            fh.write(",".join(str(v) for v in row[: len(header)]) + "\n")
    return path


def _candidates(n: int) -> list[Candidate]:
    return [Candidate(f"c_{i}", f"rcp_{i}", COLUMNS, delivered=i < n // 2) for i in range(n)]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=400, max_value=1_500),
    spread=st.sampled_from([1e2, 1e4, 1e7]),
    who=st.integers(min_value=0, max_value=7),
    frac=st.floats(min_value=0.1, max_value=1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_marked_copies_are_attributed_after_transformations(
    tmp_path_factory: pytest.TempPathFactory, n: int, spread: float, who: int, frac: float, seed: int
) -> None:
    rng = random.Random(seed)
    rows = [
        (round(rng.uniform(-spread, spread), 2), rng.randint(-int(spread), int(spread))) for _ in range(n)
    ]
    cands = _candidates(8)
    marked = _mark(rows, f"c_{who}", f"rcp_{who}")
    # distortion: at most one unit in the declared decimal place
    for (a0, c0), (a1, c1) in zip(rows, marked, strict=True):
        assert abs(round(a1 * 100) - round(a0 * 100)) <= 1
        assert abs(c1 - c0) <= 1
    rng = random.Random(seed)
    subset = rng.sample(marked, max(int(len(marked) * frac), len(marked) // 10))  # ≥ 10 %, re-sorted
    rng.shuffle(subset)
    tmp = tmp_path_factory.mktemp("wm")
    report = trace(_csv(tmp / "leak.csv", subset), SECRET, cands)
    assert report.attributed is not None
    assert (report.attributed.contract_id, report.attributed.recipient_id) == (f"c_{who}", f"rcp_{who}")
    assert report.attributed.false_attribution <= ALPHA
    assert sum(s.attributed for s in report.scores) == 1
    # a column subset (only one column) still carries the mark
    only = trace(_csv(tmp / "amount.csv", subset, ("amount",)), SECRET, cands)
    assert only.attributed is not None and only.attributed.recipient_id == f"rcp_{who}"
    # the unmarked original is nobody's copy
    clean = trace(_csv(tmp / "clean.csv", rng.sample(rows, len(subset))), SECRET, cands)
    assert clean.attributed is None


def test_false_attribution_rate_matches_the_bound(tmp_path: Path) -> None:
    """Against 40 keys that did not mark the file, no candidate is named, and the observed match counts
    behave like Bin(n, ½) (so the stated bound is the right one)."""
    rng = random.Random(5)
    rows = [(round(rng.uniform(0, 5000), 2), rng.randint(0, 10**6)) for _ in range(1_500)]
    report = trace(
        _csv(tmp_path / "clean.csv", rows),
        SECRET,
        [Candidate(f"c{i}", f"r{i}", COLUMNS, True) for i in range(40)],
    )
    assert report.attributed is None
    ratios = [s.matches / s.pairs for s in report.scores]
    assert all(0.4 < r < 0.6 for r in ratios)
    assert 0.47 < sum(ratios) / len(ratios) < 0.53


def test_too_little_evidence_names_nobody(tmp_path: Path) -> None:
    marked = _mark([(float(i), i) for i in range(3)], "c_0", "rcp_0")
    report = trace(_csv(tmp_path / "tiny.csv", marked), SECRET, _candidates(4))
    assert report.attributed is None  # 6 matching marks cannot beat α = 1e-6 over 4 candidates


def test_binomial_tail_and_bits() -> None:
    assert binomial_tail(10, 0) == 1.0
    assert binomial_tail(10, 11) == 0.0
    assert abs(binomial_tail(10, 10) - 2**-10) < 1e-15
    assert abs(binomial_tail(4, 2) - 11 / 16) < 1e-12
    for n in (1, 7, 30, 101):
        for m in range(n + 2):
            exact = sum(math.comb(n, k) for k in range(m, n + 1)) / 2**n
            assert abs(binomial_tail(n, m) - exact) <= 1e-9 * max(exact, 1e-300) + 1e-15
    key = column_key(SECRET, "c", "r", "x")
    bits = [expected_bit(key, p) for p in range(4_000)]
    assert 1_850 < sum(bits) < 2_150
    assert column_key(SECRET, "c", "r", "x") != column_key(SECRET, "c", "r2", "x")


def test_unreadable_or_unknown_files_are_refused(tmp_path: Path) -> None:
    from datavalley.errors import InvalidInput

    bad = tmp_path / "x.xlsx"
    bad.write_bytes(b"PK")
    with pytest.raises(InvalidInput):
        trace(bad, SECRET, _candidates(2))
    broken = tmp_path / "x.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(InvalidInput):
        trace(broken, SECRET, _candidates(2))
