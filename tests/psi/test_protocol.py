"""Every mode gives exactly what Python's set operations give, over real HTTP, for awkward inputs too."""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Callable

import pytest

from datavalley.psi import Bounds, IdKind, MemoryDataset, Mode, Suite
from datavalley.psi.normalise import InvalidId, normalise
from psi.support import INITIATOR, RESPONDER, Pair, valid_ric

ALL_MODES = [Mode.CARDINALITY, Mode.INTERSECTION, Mode.AGGREGATE]


def _normal(kind: IdKind, raws: list[object]) -> set[str]:
    out = set()
    for r in raws:
        with contextlib.suppress(InvalidId):
            out.add(normalise(kind, r))
    return out


CASES: dict[str, tuple[list[object], list[object]]] = {
    "empty-initiator": ([], [f"id{i}" for i in range(50)]),
    "empty-both": ([], []),
    "disjoint": ([f"left-{i}" for i in range(300)], [f"right-{i}" for i in range(200)]),
    "identical": ([f"same-{i}" for i in range(257)], [f"same-{i}" for i in range(257)]),
    "duplicates-and-invalid": (
        ["dup", "dup", " dup ", "uniq", "", "   ", None, "tab\there", "k" * 300, "shared"],
        ["shared", "shared", "dup", "other", "\x00bad"],
    ),
    "non-ascii": (
        ["张伟", "Zoë", "Zoe\u0308", "ﬁ", "😀", "客户-001"],  # "Zoe\u0308" is "Zoë" after NFC
        ["Zoë", "张伟", "fi", "😀", "客户-002"],
    ),
}


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_modes_match_python_sets(make_pair: Callable[..., Pair], mode: Mode, case: str) -> None:
    """Cardinality, intersection and the exact aggregate fed to the hook agree with set arithmetic."""
    x_raw, y_raw = CASES[case]
    values = [(i * 37) % 500 - 50 for i in range(len(y_raw))]
    bounds = Bounds(0, 400)
    pair = make_pair(MemoryDataset(y_raw, IdKind.TEXT, {"amount": values}), mode, columns={"amount": bounds})
    columns = ("amount",) if mode is Mode.AGGREGATE else ()
    out = pair.run(MemoryDataset(x_raw, IdKind.TEXT), mode=mode, columns=columns)
    x, y = _normal(IdKind.TEXT, x_raw), _normal(IdKind.TEXT, y_raw)
    assert out.cardinality == len(x & y)
    assert out.peer_set_size == len(y)
    assert out.usage.local_set_size == len(x)
    assert out.usage.normalisation.records == len(x_raw)
    if mode is Mode.INTERSECTION:
        got = out.intersection()
        assert {v for _, v in got} == x & y
        for row, value in got:  # the row numbers point at the input rows that hold the match
            assert normalise(IdKind.TEXT, x_raw[row]) == value
    else:
        assert out.intersection_file is None
    if mode is Mode.AGGREGATE:
        first_row: dict[str, int] = {}
        for i, r in enumerate(y_raw):
            with contextlib.suppress(InvalidId):
                first_row.setdefault(normalise(IdKind.TEXT, r), i)
        exact_sum = sum(bounds.clamp(values[first_row[v]]) for v in x & y)
        (exact,) = pair.release.seen
        assert exact.count == len(x & y)
        assert exact.sums == {"amount": exact_sum}
        assert out.aggregate is not None
        assert out.aggregate.mechanism == "discrete_laplace"
        assert abs(out.aggregate.count - len(x & y)) < 40  # scale 1: P(|noise| >= 40) < 1e-16
    else:
        assert pair.release.seen == []
    # both sides metered the same session, with the same transcript and no IDs
    (mine,) = pair.initiator_auth.usages
    (theirs,) = pair.responder_auth.usages
    assert mine.session_id == theirs.session_id == out.session_id
    assert mine.transcript == theirs.transcript
    assert (mine.local, theirs.local, theirs.peer_set_size) == (INITIATOR, RESPONDER, len(x))
    records = re.sub(r"sha256:[0-9a-f]{64}|psi_[0-9a-z]{26}", "", str([mine.to_dict(), theirs.to_dict()]))
    assert not any(v in records for v in x | y if len(v) > 3)


def test_invalid_and_duplicate_ids_are_reported(make_pair: Callable[..., Pair]) -> None:
    """Nothing is silently dropped: the local report names every invalid ID's reason and the duplicates."""
    pair = make_pair(MemoryDataset(["13812345678"], IdKind.PHONE))
    raws: list[object] = [
        "138 1234 5678",
        "+86 138-1234-5678",
        "008613812345678",
        "12345",
        "call me",
        None,
        13900001111,
    ]
    out = pair.run(MemoryDataset(raws, IdKind.PHONE))
    report = out.usage.normalisation
    assert report.to_dict() == {
        "records": 7,
        "invalid": {"invalid_number": 1, "missing": 1, "unparseable": 1},
        "duplicates": 2,
        "set_size": 2,
    }
    assert out.intersection() == [(0, "+8613812345678")]


@pytest.mark.parametrize("suite", list(Suite))
def test_random_sets_both_suites(make_pair: Callable[..., Pair], suite: Suite) -> None:
    """Larger random sets of resident ID numbers (several batches) intersect exactly in both suites."""
    rng = random.Random(7 + len(suite.value))
    universe = [valid_ric(rng) for _ in range(14000)]
    with_x = next(r for r in universe if r.endswith("X"))
    x = [*rng.sample(universe, 9000), with_x.lower(), with_x[:6] + " " + with_x[6:]]
    y = [*rng.sample(universe, 9000), with_x]
    pair = make_pair(MemoryDataset(y, IdKind.CN_RIC))
    out = pair.run(MemoryDataset(x, IdKind.CN_RIC), suite=suite)
    expected = _normal(IdKind.CN_RIC, x) & _normal(IdKind.CN_RIC, y)
    assert with_x in expected
    assert {v for _, v in out.intersection()} == expected
    assert out.usage.normalisation.duplicates >= 1  # the lower-case and the spaced form of with_x
