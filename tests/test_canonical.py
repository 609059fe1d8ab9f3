"""Canonical JSON follows RFC 8785 for the subset datavalley signs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datavalley.canonical import canonical_json, digest
from datavalley.errors import InvalidInput


def test_keys_sort_by_utf16_code_units() -> None:
    """RFC 8785 3.2.3: keys sort by UTF-16 code units (U+10000 sorts before U+FFFD)."""
    value = {"\ufffd": 1, "\U00010000": 2, "a": 3, "B": 4}
    assert canonical_json(value) == '{"B":4,"a":3,"\U00010000":2,"\ufffd":1}'.encode()


def test_escaping_and_no_whitespace() -> None:
    """Only required characters are escaped; non-ASCII stays UTF-8; no spaces."""
    assert canonical_json({"k": 'a"\\\n\u0001é'}) == '{"k":"a\\"\\\\\\n\\u0001é"}'.encode()


def test_non_finite_floats_and_big_integers_are_refused() -> None:
    """NaN, infinities and integers beyond 2^53-1 are InvalidInput naming the path."""
    with pytest.raises(InvalidInput, match=r"\$\.a\[1\]"):
        canonical_json({"a": [1, float("nan")]})
    with pytest.raises(InvalidInput, match="not a JSON number"):
        canonical_json({"b": float("inf")})
    with pytest.raises(InvalidInput, match="2\\^53"):
        canonical_json(2**60)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # RFC 8785 appendix B (IEEE 754 values and their canonical text)
        (0.0, "0"),
        (-0.0, "0"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (1e21, "1e+21"),
        (1e23, "1e+23"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (333333333.3333333, "333333333.3333333"),
        (-1.5, "-1.5"),
        (3.0, "3"),
        (4.5, "4.5"),
        (0.002, "0.002"),
    ],
)
def test_floats_follow_rfc8785_number_serialisation(value: float, text: str) -> None:
    assert canonical_json({"n": value}) == ('{"n":' + text + "}").encode()
    assert canonical_json([value, "x", value]) == f'[{text},"x",{text}]'.encode()


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_canonical_form_round_trips_and_is_stable(value: object) -> None:
    """Parsing canonical JSON gives the value back, and re-canonicalising is byte-identical."""
    out = canonical_json(value)
    assert json.loads(out) == value
    assert canonical_json(json.loads(out)) == out
    assert digest(value) == digest(json.loads(out))
