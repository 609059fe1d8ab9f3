"""Normal forms of the identifiers a PSI session matches on (docs/PSI.md section 1).

Both sides must agree on an ID's normal form byte for byte, or equal people stop matching; so every kind
has exactly one normaliser here, and an ID that cannot be normalised is *invalid* with a named reason
(counted and reported, never silently dropped).
"""

from __future__ import annotations

import operator
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import phonenumbers

__all__ = ["IdKind", "InvalidId", "NormalisationReport", "normalise", "normalise_many"]

#: Longest free-text ID accepted, in code points.
MAX_TEXT_ID = 256
_DEFAULT_REGION = "CN"
_RIC_SEPARATORS = str.maketrans("", "", " -")
_RIC_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RIC_CHECK = "10X98765432"
_RIC_ASCII_ZERO = 48 * sum(_RIC_WEIGHTS)  # the weighted sum of the "0" code points


class IdKind(StrEnum):
    """What the identifiers of a set are; both sides of a session must use the same kind."""

    PHONE = "phone"
    CN_RIC = "cn_ric"
    TEXT = "text"


class InvalidId(ValueError):
    """An identifier that has no normal form; ``reason`` is one of the documented reason codes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _phone(raw: str) -> str:
    try:
        number = phonenumbers.parse(raw, _DEFAULT_REGION)
    except phonenumbers.NumberParseException as exc:
        raise InvalidId("unparseable") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidId("invalid_number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _cn_ric(raw: str) -> str:
    # The catalog's PI validator rule (python-stdnum cn.ric without its birth-place table): 17 digits
    # (first not 0) + check character, a real birth date, ISO 7064 MOD 11-2 check digit. The check digit
    # is computed inline (3x faster than stdnum's, which matters at 10^7 IDs); tests/psi compare the two.
    value = raw.strip().translate(_RIC_SEPARATORS).upper()
    if len(value) != 18 or not value[:17].isdigit() or value[0] == "0" or value[17] not in "0123456789X":
        raise InvalidId("bad_format")
    try:
        date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError as exc:
        raise InvalidId("bad_birth_date") from exc
    weighted = sum(map(operator.mul, _RIC_WEIGHTS, value.encode("ascii"))) - _RIC_ASCII_ZERO
    if value[17] != _RIC_CHECK[weighted % 11]:
        raise InvalidId("bad_check_digit")
    return value


def _text(raw: str) -> str:
    value = unicodedata.normalize("NFC", raw).strip()
    if not value:
        raise InvalidId("empty")
    if len(value) > MAX_TEXT_ID:
        raise InvalidId("too_long")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise InvalidId("control_character")
    return value


_NORMALISERS = {IdKind.PHONE: _phone, IdKind.CN_RIC: _cn_ric, IdKind.TEXT: _text}


def normalise(kind: IdKind, raw: object) -> str:
    """The normal form of ``raw`` as an ID of ``kind``.

    Raises :class:`InvalidId` (with ``reason``) if it has none; ``None`` is ``missing``, and a value
    that is not a string (an integer column of phone numbers, say) is formatted with ``str`` first.
    """
    if raw is None:
        raise InvalidId("missing")
    if isinstance(raw, bool | float):
        raise InvalidId("not_text")
    return _NORMALISERS[kind](raw if isinstance(raw, str) else str(raw))


@dataclass(frozen=True)
class NormalisationReport:
    """How a side's input became its set: records read, invalid ones by reason, duplicates removed."""

    records: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid.values())

    @property
    def set_size(self) -> int:
        """Distinct valid IDs: what the peer learns as this side's set size."""
        return self.records - self.invalid_total - self.duplicates

    def to_dict(self) -> dict[str, object]:
        return {
            "records": self.records,
            "invalid": dict(sorted(self.invalid.items())),
            "duplicates": self.duplicates,
            "set_size": self.set_size,
        }


def normalise_many(kind: IdKind, raws: Iterable[object]) -> tuple[list[tuple[int, str]], Counter[str]]:
    """Normalise a batch: ``[(position, normal form)]`` of the valid ones and the invalid count by reason."""
    valid: list[tuple[int, str]] = []
    invalid: Counter[str] = Counter()
    fn = _NORMALISERS[kind]
    for i, raw in enumerate(raws):
        try:
            if raw is None:
                raise InvalidId("missing")
            if isinstance(raw, bool | float):
                raise InvalidId("not_text")
            valid.append((i, fn(raw if isinstance(raw, str) else str(raw))))
        except InvalidId as exc:
            invalid[exc.reason] += 1
    return valid, invalid
