"""Each ID kind has one normal form; invalid IDs get a named reason; RIC checks agree with python-stdnum."""

from __future__ import annotations

import random

import pytest
from stdnum.cn import ric

from datavalley.psi.normalise import IdKind, InvalidId, normalise, normalise_many
from psi.support import valid_ric


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("13812345678", "+8613812345678"),
        ("+86 138-1234-5678", "+8613812345678"),
        ("0086 13812345678", "+8613812345678"),
        (13812345678, "+8613812345678"),
        ("010 6552 9988", "+861065529988"),
        ("+1 650-253-0000", "+16502530000"),
    ],
)
def test_phone_numbers_become_e164(raw: object, normal: str) -> None:
    assert normalise(IdKind.PHONE, raw) == normal


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("hello", "unparseable"), ("12345", "invalid_number"), (None, "missing"), (1.5, "not_text")],
)
def test_invalid_phone_numbers_name_their_reason(raw: object, reason: str) -> None:
    with pytest.raises(InvalidId) as info:
        normalise(IdKind.PHONE, raw)
    assert info.value.reason == reason


def test_resident_id_numbers_agree_with_stdnum() -> None:
    """Our inline MOD 11-2 check accepts exactly what python-stdnum's check digit and date rules accept."""
    rng = random.Random(3)
    for _ in range(3000):
        value = valid_ric(rng)
        if rng.random() < 0.5:  # corrupt one character
            i = rng.randrange(18)
            value = value[:i] + rng.choice("0123456789X") + value[i + 1 :]
        try:
            ric.get_birth_date(value)
            expected = value[:17].isdigit() and value[17] == ric.calc_check_digit(value)
        except Exception:
            expected = False
        try:
            ok = normalise(IdKind.CN_RIC, value.lower()) == value
        except InvalidId:
            ok = False
        assert ok == expected, value


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("1234", "bad_format"),
        ("110101199013321231", "bad_birth_date"),
        ("110101199001011231", "bad_check_digit"),
    ],
)
def test_invalid_resident_ids(raw: str, reason: str) -> None:
    with pytest.raises(InvalidId) as info:
        normalise(IdKind.CN_RIC, raw)
    assert info.value.reason == reason


def test_text_ids_are_nfc_and_stripped() -> None:
    assert normalise(IdKind.TEXT, "  Zoe\u0308\t") == "Zoë"
    valid, invalid = normalise_many(IdKind.TEXT, ["", " ", "a\x07b", "x" * 257, "ok", None])
    assert valid == [(4, "ok")]
    assert dict(invalid) == {"empty": 2, "control_character": 1, "too_long": 1, "missing": 1}
