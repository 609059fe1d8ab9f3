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


def test_floats_and_big_integers_are_refused() -> None:
    """Floats and integers beyond 2^53-1 are InvalidInput naming the path."""
    with pytest.raises(InvalidInput, match=r"\$\.a\[1\]"):
        canonical_json({"a": [1, 2.5]})
    with pytest.raises(InvalidInput, match="2\\^53"):
        canonical_json(2**60)


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
