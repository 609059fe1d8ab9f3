"""Personal information (PI) detection per column, exact counts computed inside DuckDB.

Content detectors look at whole cell values (free-text scanning is out of scope) of text columns and of
integer columns (a CSV column of phone numbers is read as BIGINT). Each value is claimed by at most one
content detector, in this order, so that overlapping shapes (an 18-digit ID number is also a valid USCC
*shape* and may pass Luhn) are not double counted:

==============  ==========================================================  =========================
kind            matches (shape)                                             valid
==============  ==========================================================  =========================
``cn_ric``      18 chars, ``[1-9]\\d{16}[\\dXx]``                            birth date is a real date
                                                                            (1900 to today), a real
                                                                            province code, and ISO
                                                                            7064 MOD 11-2
                                                                            check digit (weights
                                                                            7,9,10,5,8,4,2,1,6,3,...)
``cn_uscc``     18 chars, 8 digits + 10 of ``0-9A-HJ-NPQRTUWXY``            GB 32100 MOD 31 check
                (case-insensitive), not claimed by a valid ``cn_ric``
``bank_card``   13-19 digits, first digit 3-6 (ISO/IEC 7812 payment MII)    Luhn
``cn_mobile``   optional ``+86``/``0086``/``86`` prefix, ``1`` + 10 digits  libphonenumber's CN mobile
                                                                            pattern (read at run time
                                                                            from ``phonenumbers``)
``email``       ``local@domain`` without spaces                             RFC-5322-ish dot-atom with
                                                                            a 2+ letter TLD
``cn_plate``    mainland plates incl. new-energy (D/F) plates               same as matches
``coordinates`` ``lat,lon`` text with >= 4 decimals each, or numeric        >= 4 decimals (about 11 m)
                columns named like lat/lon/纬度/经度 within range
==============  ==========================================================  =========================

An 18-digit value with a real province code and a real birth date between 1900-01-01 and the scan's
reference date is an ID number, valid or not: with a wrong check digit it is an *invalid* ``cn_ric`` and is
never claimed as a USCC or bank card that happens to validate (validation strength: ID structure and
MOD 11-2 > USCC MOD 31 > Luhn, which 10 % of random numbers pass).

**Labelling.** A column is labelled with content kinds only when the values valid as some content kind
make up at least ``LABEL_SHARE`` (70 %) of its non-null values, and then with each kind that accounts for
at least ``KIND_SHARE`` (5 %); a column of 19-digit order numbers (about 11 % pass Luhn) or of ID numbers
with wrong check digits is labelled with nothing. Column-name hints label kinds that have no validator
(names, addresses, health...); a "credit code" name is an organisation's identifier, not financial data.
``estimated_individuals`` counts distinct *valid* identifier values only. Measured on the labelled decoy
set in ``tests/catalog/test_pii_precision.py``: precision >= 0.95 and recall >= 0.99 per kind.

``cn_ric`` validity follows python-stdnum ``cn.ric`` except the birth-place lookup (a historic table of
region codes that is not worth a join on every row); the small-sample cross-check reports how many
sampled values python-stdnum (with the birth-place check) and phonenumbers accept, and any disagreement
between the SQL validators and those libraries.

Column-name hints (English tokens and Chinese substrings) add person names, addresses, health data,
birth dates and ages, gender, ethnicity, religion, biometrics and financial data; for hinted columns the
count is the number of non-null cells. Minors (under 14, PIPL art. 28/31) are counted exactly from
ages, birth dates and the birth dates inside valid ID numbers.

Sensitive PI follows PIPL art. 28: ID numbers, financial accounts, health, precise location/whereabouts,
minors' data, biometrics, religion and specific identities (ethnicity).

Everything is counted exactly in the single aggregate scan, except the distinct-value estimate used for
``estimated_individuals`` (HyperLogLog ``approx_count_distinct``: mean error about 2%, rarely up to 8%; see
:mod:`datavalley.catalog.profile`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata
from stdnum import luhn
from stdnum.cn import ric, uscc

from datavalley.catalog._sql import ScanPlan, quote_ident, quote_literal
from datavalley.catalog.schema import CanonicalType, Column, Schema
from datavalley.catalog.sources import SourceConnection

__all__ = [
    "IDENTIFIER_KINDS",
    "NON_PERSONAL_KINDS",
    "SENSITIVE_KINDS",
    "ColumnPII",
    "CrossCheck",
    "Detection",
    "PIIKind",
    "PIIPlan",
    "PIIReport",
    "classify_values",
    "cn_mobile_pattern",
    "library_valid",
    "scan_pii",
    "sql_valid",
]


class PIIKind(StrEnum):
    CN_RIC = "cn_ric"
    CN_USCC = "cn_uscc"
    BANK_CARD = "bank_card"
    CN_MOBILE = "cn_mobile"
    EMAIL = "email"
    CN_PLATE = "cn_plate"
    COORDINATES = "coordinates"
    PERSON_NAME = "person_name"
    ADDRESS = "address"
    HEALTH = "health"
    BIRTH_DATE = "birth_date"
    AGE = "age"
    MINOR = "minor"
    GENDER = "gender"
    ETHNICITY = "ethnicity"
    RELIGION = "religion"
    BIOMETRIC = "biometric"
    FINANCIAL = "financial"


#: PIPL art. 28 sensitive personal information.
SENSITIVE_KINDS = frozenset(
    {
        PIIKind.CN_RIC,
        PIIKind.BANK_CARD,
        PIIKind.COORDINATES,
        PIIKind.HEALTH,
        PIIKind.MINOR,
        PIIKind.ETHNICITY,
        PIIKind.RELIGION,
        PIIKind.BIOMETRIC,
        PIIKind.FINANCIAL,
    }
)
#: Organisation identifiers: detected and reported, but not personal information.
NON_PERSONAL_KINDS = frozenset({PIIKind.CN_USCC})
#: Kinds whose distinct values approximate distinct people (used for ``estimated_individuals``).
IDENTIFIER_KINDS = frozenset(
    {PIIKind.CN_RIC, PIIKind.CN_MOBILE, PIIKind.EMAIL, PIIKind.BANK_CARD, PIIKind.CN_PLATE}
)

#: Age below which PIPL treats personal information as a minor's (sensitive).
MINOR_AGE = 14


@dataclass(frozen=True)
class Detection:
    """One detector's exact result on one column. ``method`` is ``content`` or ``column_name``."""

    kind: PIIKind
    method: str
    matches: int
    valid: int


@dataclass(frozen=True)
class CrossCheck:
    """Small-sample comparison of the SQL validator with python-stdnum / phonenumbers.

    ``disagreements`` counts sampled values where the SQL validator and the library's equivalent check
    differ (expected 0); ``library_valid`` is the library's full verdict (for ``cn_ric`` it includes
    the birth-place lookup the SQL validator omits).
    """

    kind: PIIKind
    checked: int
    sql_valid: int
    library_valid: int
    disagreements: int


@dataclass(frozen=True)
class ColumnPII:
    """Personal information found in one column.

    ``kind`` is the primary kind (most valid values), ``kinds`` all kinds found; ``matches``/``valid``
    belong to the primary kind and are exact. ``detections`` has every detector's counts.
    """

    column: str
    kind: PIIKind
    kinds: tuple[PIIKind, ...]
    matches: int
    valid: int
    sensitive: bool
    personal: bool
    detections: tuple[Detection, ...]
    distinct_estimate: int | None = None
    cross_checks: tuple[CrossCheck, ...] = ()


@dataclass(frozen=True)
class PIIReport:
    """PI scan result for a resource."""

    columns: tuple[ColumnPII, ...]
    sensitive: bool
    estimated_individuals: int
    row_count: int

    @property
    def personal_columns(self) -> frozenset[str]:
        """Columns holding personal information (whose raw values must never leave the node)."""
        return frozenset(c.column for c in self.columns if c.personal)

    @property
    def sensitive_columns(self) -> frozenset[str]:
        return frozenset(c.column for c in self.columns if c.sensitive)

    @property
    def kinds(self) -> frozenset[PIIKind]:
        return frozenset(k for c in self.columns for k in c.kinds)

    def column(self, name: str) -> ColumnPII | None:
        """The result for column ``name``, or None if it holds no PI."""
        return next((c for c in self.columns if c.column == name), None)


# --- column-name hints ----------------------------------------------------------------------------

_PERSON_NOUNS = frozenset(
    [
        "customer",
        "user",
        "driver",
        "patient",
        "passenger",
        "member",
        "employee",
        "person",
        "contact",
        "owner",
        "holder",
        "cardholder",
        "student",
        "teacher",
        "doctor",
        "applicant",
        "buyer",
        "seller",
        "consignee",
        "recipient",
        "receiver",
        "sender",
        "guest",
        "client",
        "staff",
        "worker",
        "resident",
        "citizen",
        "account",
        "real",
        "legal",
        "parent",
        "guardian",
        "child",
        "insured",
        "beneficiary",
    ]
)
_NAME_TOKENS = frozenset({"firstname", "lastname", "fullname", "surname", "givenname", "realname"})

# (kind, English tokens, Chinese substrings)
_HINTS: tuple[tuple[PIIKind, frozenset[str], tuple[str, ...]], ...] = (
    (
        PIIKind.HEALTH,
        frozenset(
            [
                "diagnosis",
                "diagnoses",
                "disease",
                "diseases",
                "medical",
                "health",
                "symptom",
                "symptoms",
                "prescription",
                "medication",
                "medications",
                "allergy",
                "allergies",
                "illness",
                "icd",
                "treatment",
                "clinical",
            ]
        ),
        ("病历", "诊断", "病情", "疾病", "症状", "处方", "用药", "过敏", "健康", "病史", "就诊", "检验"),
    ),
    (PIIKind.ADDRESS, frozenset({"address", "addr", "street"}), ("地址", "住址", "住所", "居住地", "户籍")),
    (PIIKind.BIRTH_DATE, frozenset({"birth", "birthday", "birthdate", "dob"}), ("出生", "生日")),
    (PIIKind.AGE, frozenset({"age"}), ("年龄", "周岁")),
    (PIIKind.GENDER, frozenset({"gender", "sex"}), ("性别",)),
    (PIIKind.ETHNICITY, frozenset({"ethnicity", "ethnic", "race"}), ("民族",)),
    (PIIKind.RELIGION, frozenset({"religion", "religious", "faith"}), ("宗教", "信仰")),
    (
        PIIKind.BIOMETRIC,
        frozenset({"fingerprint", "face", "facial", "iris", "voiceprint", "biometric", "biometrics"}),
        ("人脸", "指纹", "虹膜", "声纹", "面部"),
    ),
    (
        PIIKind.FINANCIAL,
        frozenset({"bank", "iban", "salary", "income", "deposit", "credit", "balance"}),
        ("银行", "账号", "账户", "卡号", "工资", "薪资", "收入", "存款", "征信", "余额"),
    ),
)
_NOT_ADDRESS = frozenset({"ip", "mac", "email", "mail", "wallet", "web", "url"})
_MONEY = frozenset({"bank", "iban", "salary", "income", "deposit", "balance", "card", "limit", "score"})
_CN_NAME = ("姓名", "名字", "联系人", "收件人", "收货人", "持卡人", "患者")
_LAT_TOKENS = frozenset({"lat", "latitude"})
_LON_TOKENS = frozenset({"lon", "lng", "long", "longitude"})


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def name_hints(name: str) -> list[PIIKind]:
    """PI kinds suggested by a column name alone (English tokens, Chinese substrings)."""
    tokens = _tokens(name)
    token_set = set(tokens)
    found: list[PIIKind] = []
    joined = "".join(tokens)
    if (
        (
            "name" in token_set
            and (
                len(tokens) == 1
                or token_set & _PERSON_NOUNS
                or token_set & {"first", "last", "full", "given"}
            )
        )
        or joined in _NAME_TOKENS
        or any(s in name for s in _CN_NAME)
    ):
        found.append(PIIKind.PERSON_NAME)
    for kind, words, chinese in _HINTS:
        if kind is PIIKind.FINANCIAL and {"credit", "code"} <= token_set and not token_set & _MONEY:
            continue  # "credit code": an organisation's unified social credit code, not a person's finances
        if kind is PIIKind.ADDRESS and token_set & _NOT_ADDRESS:
            continue
        if token_set & words or any(s in name for s in chinese):
            found.append(kind)
    return found


def coordinate_axis(name: str) -> str | None:
    """``lat``/``lon`` if the column name says it holds latitudes/longitudes."""
    token_set = set(_tokens(name))
    if token_set & _LAT_TOKENS or "纬度" in name:
        return "lat"
    if token_set & _LON_TOKENS or "经度" in name:
        return "lon"
    return None


# --- SQL validators -------------------------------------------------------------------------------

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_SHAPE = r"[0-9]{8}[0-9A-HJ-NPQRTUWXY]{10}"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_MOBILE_PREFIX = r"(?:(?:\+|00)?86[ -]?)?"
_EMAIL_SHAPE = r"[^@\s]+@[^@\s]+"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL_VALID = _ATOM + r"(?:\." + _ATOM + r")*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE = (
    f"[{_PROVINCES}][A-HJ-NP-Z](?:[A-HJ-NP-Z0-9]{{4}}[A-HJ-NP-Z0-9挂学警港澳]"
    r"|[DF][A-HJ-NP-Z0-9][0-9]{4}|[0-9]{5}[DF])"
)
_LATLON = r"\(?\s*-?[0-9]{1,3}\.[0-9]{4,}\s*[,，]\s*-?[0-9]{1,3}\.[0-9]{4,}\s*\)?"

# Weights of the telescoped MOD 11-2 sum. With q_j = n17 // 10**j (n17 = the first 17 digits) the
# weighted digit sum sum_j 2**(j+1) * d_j equals sum_j c_j * q_j (mod 11) with c_0 = 2 and
# c_j = 3 * 2**j: that needs one division per digit instead of a division and a modulo. Splitting
# n17 = hi * 10**9 + lo keeps every product far from BIGINT overflow; since 10 = -1 (mod 11) the
# q_j of the low half pick up hi * (-1)**(9-j), folded into the constant _RIC_K.
_RIC_C = (2, *((3 * pow(2, j, 11)) % 11 for j in range(1, 17)))
_RIC_K = sum(_RIC_C[j] * (-1) ** (9 - j) for j in range(9)) % 11


def cn_mobile_pattern() -> str:
    """libphonenumber's national-number pattern for CN mobile numbers (from the installed library)."""
    meta = PhoneMetadata.metadata_for_region("CN")
    if meta is None or meta.mobile is None or meta.mobile.national_number_pattern is None:
        raise RuntimeError("phonenumbers has no CN mobile metadata")
    return str(meta.mobile.national_number_pattern)


def _ric_chunks(n17: str) -> dict[str, str]:
    """Level-4 helpers: the 17-digit body split into INTEGER chunks a (5 digits), b (6), c (6).

    64-bit integer division is several times slower than 32-bit division in DuckDB, so the four 64-bit
    divisions here are the only ones; all digit arithmetic below runs on INTEGERs.
    """
    return {
        "a": f"CAST({n17} // 1000000000000 AS INTEGER)",
        "b": f"CAST(({n17} // 1000000) % 1000000 AS INTEGER)",
        "c": f"CAST({n17} % 1000000 AS INTEGER)",
    }


def _ric_sum(a: str, b: str, c: str) -> str:
    """MOD 11-2 weighted digit sum (mod 11 equivalent) of the body a|b|c.

    With q_j = n17 // 10**j the weighted sum is sum_j _RIC_C[j] * q_j (mod 11). For j < 12, q_j also
    carries the higher chunks times 10**k = (-1)**k (mod 11); those contributions are folded into
    the constants multiplying b and a. Every product stays below 10 * 10**6, so INTEGER never overflows.
    """
    k_b = sum(_RIC_C[j] * (-1) ** (6 - j) for j in range(6)) % 11
    k_a = sum(_RIC_C[j] * (-1) ** (12 - j) for j in range(12)) % 11
    terms = [f"{_RIC_C[0]} * {c}"]
    terms += [f"{_RIC_C[j]} * ({c} // {10**j})" for j in range(1, 6)]
    terms.append(f"{(_RIC_C[6] + k_b) % 11} * {b}")
    terms += [f"{_RIC_C[j]} * ({b} // {10 ** (j - 6)})" for j in range(7, 12)]
    terms.append(f"{(_RIC_C[12] + k_a) % 11} * {a}")
    terms += [f"{_RIC_C[j]} * ({a} // {10 ** (j - 12)})" for j in range(13, 17)]
    return " + ".join(terms)


def _ric_date(b: str, c: str) -> dict[str, str]:
    # n17 = RRRRR | R YYYY M | M DD SSS  (chunks a | b | c)
    return {
        "y": f"(({b} // 10) % 10000)",
        "m": f"(({b} % 10) * 10 + {c} // 100000)",
        "d": f"(({c} // 1000) % 100)",
    }


def _date_ok(y: str, m: str, d: str) -> str:
    leap = f"(CASE WHEN ({y} % 4 = 0 AND {y} % 100 <> 0) OR {y} % 400 = 0 THEN 1 ELSE 0 END)"
    # Days in a month other than February: 30 + ((m + m // 8) % 2) gives 31,30,31,30,31,30,31,31,...
    days = f"(CASE WHEN {m} = 2 THEN 28 + {leap} ELSE 30 + (({m} + {m} // 8) % 2) END)"
    return f"({y} >= 1 AND {m} BETWEEN 1 AND 12 AND {d} BETWEEN 1 AND {days})"


def _luhn_ok(n: str) -> str:
    parts = []
    for j in range(19):
        d = f"(({n} // {10**j}) % 10)"
        parts.append(d if j % 2 == 0 else f"(2 * {d} - 9 * ({d} // 5))")
    return f"(({' + '.join(parts)}) % 10 = 0)"


def _uscc_ok(u: str) -> str:
    alpha = quote_literal(_USCC_ALPHABET)
    total = " + ".join(
        f"{w} * (instr({alpha}, substr({u}, {i + 1}, 1)) - 1)" for i, w in enumerate(_USCC_WEIGHTS)
    )
    return f"((31 - ({total}) % 31) % 31 = instr({alpha}, substr({u}, 18, 1)) - 1)"


# Value states produced by the per-row classifier (UTINYINT); 0 = no content detector matched.
_ST_RIC_BAD, _ST_RIC_OK, _ST_RIC_MINOR = 1, 2, 3
_ST_USCC_BAD, _ST_USCC_OK = 4, 5
_ST_CARD_BAD, _ST_CARD_OK = 6, 7
_ST_MOBILE_BAD, _ST_MOBILE_OK = 8, 9
_ST_EMAIL_BAD, _ST_EMAIL_OK = 10, 11
_ST_PLATE = 12
_ST_LATLON = 13
_N_STATES = 14

_STATES: dict[PIIKind, tuple[tuple[int, ...], tuple[int, ...]]] = {
    # kind: (states counted as matches, states counted as valid)
    PIIKind.CN_RIC: ((1, 2, 3), (2, 3)),
    PIIKind.CN_USCC: ((4, 5), (5,)),
    PIIKind.BANK_CARD: ((6, 7), (7,)),
    PIIKind.CN_MOBILE: ((8, 9), (9,)),
    PIIKind.EMAIL: ((10, 11), (11,)),
    PIIKind.CN_PLATE: ((12,), (12,)),
    PIIKind.COORDINATES: ((13,), (13,)),
}


_POW10 = "CASE {n} " + " ".join(f"WHEN {k} THEN {10 ** (k - 1)}" for k in range(11, 20)) + " END"
_NO_EXPONENT = "({num} % 10 <> 0 OR NOT (contains({t}, 'e') OR contains({t}, 'E')))"


def _project_state(plan: ScanPlan, column: Column, minor_cutoff: int) -> str | None:
    """Add the per-row classifier of ``column`` to ``plan`` (levels 1-5); returns its name.

    String functions dominate the cost, so each value goes through ONE ``TRY_CAST(... AS UBIGINT)``
    and the digit-based detectors work on the number. A value of L characters (11 <= L <= 19) is
    "L plain digits" when it starts with a character >= '1' (no sign, space, leading zero or hex
    prefix), casts, and the number has L digits: any other character costs a digit. The exception is
    exponent notation ("12345678901234e03"), which always ends in 0 and is ruled out by a string test
    on those values only. The tests check this against regular expressions.
    """
    ref = quote_ident(column.name)
    if column.type is CanonicalType.INTEGER:
        if column.source_type.upper() in ("TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT"):
            return None  # cannot hold 11+ digit identifiers
        return _project_integer_state(plan, ref, minor_cutoff)
    if column.type is not CanonicalType.TEXT:
        return None
    t = ref if column.source_type.upper() == "VARCHAR" else f"CAST({ref} AS VARCHAR)"
    length = plan.project(1, f"strlen({t})")
    num = plan.project(
        1, f"CASE WHEN strlen({t}) BETWEEN 11 AND 19 AND {t} >= '1' THEN TRY_CAST({t} AS UBIGINT) END"
    )
    dig = plan.project(
        2,
        f"({num} IS NOT NULL AND {num} >= {_POW10.format(n=length)} AND {_NO_EXPONENT.format(num=num, t=t)})",
    )
    x17 = plan.project(
        2,
        f"CASE WHEN {length} = 18 AND {num} IS NULL AND (suffix({t}, 'X') OR suffix({t}, 'x')) "
        f"AND {t} >= '1' THEN TRY_CAST(substr({t}, 1, 17) AS BIGINT) END",
    )
    n17 = plan.project(
        3,
        f"CASE WHEN {length} = 18 AND {dig} THEN CAST({num} // 10 AS BIGINT) "
        f"WHEN {x17} BETWEEN 10000000000000000 AND 99999999999999999 AND {_NO_EXPONENT.format(num=x17, t=t)} "
        f"THEN {x17} END",
    )
    last = plan.project(3, f"CASE WHEN {length} = 18 AND {dig} THEN CAST({num} % 10 AS INTEGER) ELSE 10 END")
    ric_valid, ric_states, ric_shape = _ric_conditions(plan, n17, last, minor_cutoff)
    mobile_valid = "(?:" + cn_mobile_pattern() + ")"
    u = f"upper({t})"
    uscc_shape = f"{length} = 18 AND regexp_full_match({u}, '{_USCC_SHAPE}')"
    card = f"{length} BETWEEN 13 AND 19 AND {dig} AND {t} >= '3' AND {t} < '7'"
    # Valid values are claimed first (ID number, then USCC, then card) so that a value that is valid as
    # one kind is never counted as an invalid other kind; shape-only matches are claimed afterwards.
    # The integer length gates keep the regexps off values that cannot match.
    state = (
        "(CASE"
        f" WHEN {ric_valid} THEN {ric_states}"
        f" WHEN {ric_shape} THEN {_ST_RIC_BAD}"
        f" WHEN {uscc_shape} AND {_uscc_ok(u)} THEN {_ST_USCC_OK}"
        f" WHEN {card} AND {_luhn_ok(num)} THEN {_ST_CARD_OK}"
        f" WHEN {n17} IS NOT NULL THEN {_ST_RIC_BAD}"
        f" WHEN {uscc_shape} THEN {_ST_USCC_BAD}"
        f" WHEN {card} THEN {_ST_CARD_BAD}"
        f" WHEN {length} = 11 AND {dig} AND {num} < 20000000000 THEN"
        f" (CASE WHEN regexp_full_match({t}, {quote_literal(mobile_valid)}) THEN {_ST_MOBILE_OK}"
        f" ELSE {_ST_MOBILE_BAD} END)"
        f" WHEN {length} BETWEEN 12 AND 16 AND regexp_full_match({t}, '{_MOBILE_PREFIX}1[0-9]{{10}}') THEN"
        f" (CASE WHEN regexp_full_match({t}, {quote_literal(_MOBILE_PREFIX + mobile_valid)})"
        f" THEN {_ST_MOBILE_OK} ELSE {_ST_MOBILE_BAD} END)"
        f" WHEN {length} < 5 THEN 0"
        # A plate is 7-8 characters in 9-11 bytes; the character count keeps 3-character names
        # (also 9 bytes) away from the plate regexp.
        f" WHEN {length} BETWEEN 9 AND 11 AND length({t}) BETWEEN 7 AND 8"
        f" AND regexp_full_match({t}, '{_PLATE}') THEN {_ST_PLATE}"
        f" WHEN contains({t}, '@') THEN"
        f" (CASE WHEN NOT regexp_full_match({t}, '{_EMAIL_SHAPE}') THEN 0"
        f" WHEN regexp_full_match({t}, {quote_literal(_EMAIL_VALID)}) THEN {_ST_EMAIL_OK}"
        f" ELSE {_ST_EMAIL_BAD} END)"
        f" WHEN {length} >= 13 AND (contains({t}, ',') OR contains({t}, '，'))"
        f" AND regexp_full_match({t}, '{_LATLON}') THEN {_ST_LATLON}"
        " ELSE 0 END)::UTINYINT"
    )
    return plan.project(5, state)


#: First two digits of mainland, Taiwan, Hong Kong and Macao region codes (GB/T 2260).
_RIC_PROVINCES = (
    11,
    12,
    13,
    14,
    15,
    21,
    22,
    23,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    41,
    42,
    43,
    44,
    45,
    46,
    50,
    51,
    52,
    53,
    54,
    61,
    62,
    63,
    64,
    65,
    71,
    81,
    82,
    83,
)
#: Earliest birth date an ID number may carry (YYYYMMDD); the latest is the scan's reference date.
RIC_EARLIEST_BIRTH = 19000101


def _ric_conditions(plan: ScanPlan, n17: str, last: str, minor_cutoff: int) -> tuple[str, str, str]:
    """(valid-ID condition, minor/adult state, ID-structure condition) for body ``n17`` and check ``last``.

    The structure condition (a real province code and a real birth date between 1900-01-01 and the
    reference date) holds for ID numbers whatever their check digit: such a value with a wrong check
    digit is an invalid ID number, never a bank card or a credit code that happens to validate.
    """
    chunks = {k: plan.project(4, v) for k, v in _ric_chunks(n17).items()}
    ymd = _ric_date(chunks["b"], chunks["c"])
    date_ok = _date_ok(ymd["y"], ymd["m"], ymd["d"])
    ric_ok = f"((12 - ({_ric_sum(chunks['a'], chunks['b'], chunks['c'])}) % 11) % 11 = {last})"
    born = f"({ymd['y']} * 10000 + {ymd['m']} * 100 + {ymd['d']})"
    # minor_cutoff is the reference date minus MINOR_AGE years (YYYYMMDD arithmetic).
    latest = minor_cutoff + MINOR_AGE * 10000
    provinces = ", ".join(str(p) for p in _RIC_PROVINCES)
    structure = (
        f"{n17} IS NOT NULL AND {date_ok} AND {born} BETWEEN {RIC_EARLIEST_BIRTH} AND {latest} "
        f"AND {chunks['a']} // 1000 IN ({provinces})"
    )
    states = f"(CASE WHEN {born} > {minor_cutoff} THEN {_ST_RIC_MINOR} ELSE {_ST_RIC_OK} END)"
    return f"{structure} AND {ric_ok}", states, structure


def _project_integer_state(plan: ScanPlan, ref: str, minor_cutoff: int) -> str:
    # Integer columns (e.g. a CSV column of phone numbers read as BIGINT) only need the all-digit
    # detectors, and numeric ranges replace the string tests.
    x = f"CAST({ref} AS HUGEINT)"
    num = plan.project(
        1, f"CASE WHEN {x} BETWEEN 10000000000 AND 9999999999999999999 THEN CAST({x} AS UBIGINT) END"
    )
    n17 = plan.project(
        3,
        f"CASE WHEN {num} BETWEEN 100000000000000000 AND 999999999999999999 "
        f"THEN CAST({num} // 10 AS BIGINT) END",
    )
    last = plan.project(3, f"CAST({num} % 10 AS INTEGER)")
    ric_valid, ric_states, ric_shape = _ric_conditions(plan, n17, last, minor_cutoff)
    t = f"CAST({ref} AS VARCHAR)"
    card = " OR ".join(f"{num} BETWEEN {3 * 10**k} AND {7 * 10**k - 1}" for k in range(12, 19))
    mobile_valid = "(?:" + cn_mobile_pattern() + ")"
    state = (
        "(CASE"
        f" WHEN {ric_valid} THEN {ric_states}"
        f" WHEN {ric_shape} THEN {_ST_RIC_BAD}"
        f" WHEN ({card}) AND {_luhn_ok(num)} THEN {_ST_CARD_OK}"
        f" WHEN {n17} IS NOT NULL THEN {_ST_RIC_BAD}"
        f" WHEN ({card}) THEN {_ST_CARD_BAD}"
        f" WHEN {num} < 20000000000 THEN"
        f" (CASE WHEN regexp_full_match({t}, {quote_literal(mobile_valid)}) THEN {_ST_MOBILE_OK}"
        f" ELSE {_ST_MOBILE_BAD} END)"
        " ELSE 0 END)::UTINYINT"
    )
    return plan.project(5, state)


def classify_values(
    con: Any, values: Sequence[str | None], *, reference_date: date | None = None
) -> list[tuple[PIIKind | None, bool]]:
    """Run the SQL classifier over ``values``: for each, the content kind it matches (or None) and
    whether it is valid. Meant for tests and spot checks; a scan never returns values.

    ``con`` is any DuckDB connection (it only evaluates expressions over the given list).
    """
    plan = ScanPlan()
    column = Column("v", CanonicalType.TEXT, "VARCHAR")
    state = _project_state(plan, column, _cutoff(reference_date or date.today()))
    view = "(SELECT unnest($values::VARCHAR[]) AS v, generate_subscripts($values::VARCHAR[], 1) AS i)"
    rows = con.execute(
        f"SELECT {state} FROM {plan.relation(view)} ORDER BY i", {"values": list(values)}
    ).fetchall()
    out: list[tuple[PIIKind | None, bool]] = []
    for (st,) in rows:
        found: tuple[PIIKind | None, bool] = (None, False)
        for kind, (match_states, valid_states) in _STATES.items():
            if st in match_states:
                found = (kind, st in valid_states)
                break
        out.append(found)
    return out


def sql_valid(con: Any, kind: PIIKind, values: Sequence[str]) -> list[bool]:
    """For each value, whether the SQL classifier counts it as a valid ``kind``."""
    if kind not in _STATES:
        raise ValueError(f"{kind} has no content validator")
    return [k is kind and ok for k, ok in classify_values(con, values)]


def _cutoff(today: date) -> int:
    """Birth dates after this YYYYMMDD number belong to people under :data:`MINOR_AGE`."""
    try:
        born = today.replace(year=today.year - MINOR_AGE)
    except ValueError:  # 29 February
        born = today.replace(year=today.year - MINOR_AGE, day=28)
    return born.year * 10000 + born.month * 100 + born.day


def _guarded(check: Callable[[str], object]) -> Callable[[str], bool]:
    """``check`` with any exception counted as "invalid".

    The libraries are not exception-safe on every input: python-stdnum's ``cn.ric.validate`` raises
    ``KeyError`` from ``get_birth_place`` for region codes its table lists without a county (for example
    ``110300``), and ``is_valid`` only catches its own ``ValidationError``. A cross-check must report such
    values as rejected by the library, not crash the registration scan.
    """

    def safe(value: str) -> bool:
        try:
            return bool(check(value))
        except Exception:
            return False

    safe.__name__ = getattr(check, "__name__", "check")
    safe.__doc__ = check.__doc__
    return safe


def _ric_equivalent(value: str) -> bool:
    # python-stdnum cn.ric without the birth-place lookup (which the SQL validator omits on purpose).
    v = ric.compact(value)
    if len(v) != 18 or not v[:-1].isdigit() or v[0] == "0":
        return False
    born = ric.get_birth_date(v)  # raises ValidationError for an impossible date (-> invalid via _guarded)
    if not (date(1900, 1, 1) <= born <= date.today()) or int(v[:2]) not in _RIC_PROVINCES:
        return False
    return bool(v[-1] == ric.calc_check_digit(v))


def _mobile_valid(value: str) -> bool:
    number = phonenumbers.parse(value, "CN")  # NumberParseException -> invalid via _guarded
    return (
        number.country_code == 86
        and phonenumbers.is_valid_number(number)
        and phonenumbers.number_type(number)
        in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    )


def _card_valid(value: str) -> bool:
    return 13 <= len(value) <= 19 and value.isdigit() and value[0] in "3456" and bool(luhn.is_valid(value))


_LIBRARY: dict[PIIKind, tuple[Callable[[str], bool], Callable[[str], bool]]] = {
    # kind: (check equivalent to the SQL validator, the library's full verdict); every check is
    # guarded, so an exception inside a library counts as "invalid" instead of aborting the scan.
    PIIKind.CN_RIC: (_guarded(_ric_equivalent), _guarded(ric.validate)),
    PIIKind.CN_USCC: (_guarded(uscc.validate), _guarded(uscc.validate)),
    PIIKind.BANK_CARD: (_guarded(_card_valid), _guarded(_card_valid)),
    PIIKind.CN_MOBILE: (_guarded(_mobile_valid), _guarded(_mobile_valid)),
}


def library_valid(kind: PIIKind, value: str) -> bool:
    """The python-stdnum / phonenumbers verdict for ``value`` as ``kind`` (full library semantics).

    Any exception the library raises (not only its ``ValidationError``) counts as invalid.

    Raises:
        KeyError: ``kind`` has no library validator (only ``cn_ric``, ``cn_uscc``, ``bank_card`` and
            ``cn_mobile`` have one).
    """
    return _LIBRARY[kind][1](value)


# --- the scan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ColumnPlan:
    column: Column
    states: str | None
    hints: tuple[PIIKind, ...]
    non_null: str
    distinct: str
    extra: dict[str, str]
    valid_distinct: str | None = None


#: A column is labelled with content kinds only when at least this share of its non-null values validate
#: as one of them (the rest are neither valid as another kind): a few values that pass a check by chance
#: (11 % of random 19-digit numbers pass Luhn) or a stray identifier in a free-text column label nothing.
LABEL_SHARE = 0.7
#: ... and each labelled kind must itself account for at least this share of the non-null values.
KIND_SHARE = 0.05
#: Valid states whose values identify a person (estimated individuals count these values only).
_IDENTIFIER_STATES = (_ST_RIC_OK, _ST_RIC_MINOR, _ST_CARD_OK, _ST_MOBILE_OK, _ST_EMAIL_OK, _ST_PLATE)


class PIIPlan:
    """Registers the PI helper columns and aggregates in a shared :class:`ScanPlan`.

    ``distinct_sources`` maps column names to an expression whose approximate distinct count stands for
    the column's (the fingerprint's cell hashes, when the analysis has them); otherwise the column.
    """

    def __init__(
        self,
        schema: Schema,
        plan: ScanPlan,
        *,
        reference_date: date | None = None,
        distinct_sources: dict[str, str] | None = None,
    ) -> None:
        self.schema = schema
        today = reference_date or date.today()
        self._cutoff = _cutoff(today)
        self._columns: list[_ColumnPlan] = []
        for column in schema.columns:
            ref = quote_ident(column.name)
            state = _project_state(plan, column, self._cutoff)
            # histogram() over a UTINYINT is a single cheap aggregate; 13 FILTERed counts cost 10x more.
            states = plan.add(f"histogram({state}) FILTER (WHERE {state} > 0)") if state else None
            hints = tuple(name_hints(column.name))
            distinct_of = (distinct_sources or {}).get(column.name, ref)
            identifiers = ", ".join(str(st) for st in _IDENTIFIER_STATES)
            valid_distinct = (
                plan.add(f"approx_count_distinct({distinct_of}) FILTER (WHERE {state} IN ({identifiers}))")
                if state
                else None
            )
            self._columns.append(
                _ColumnPlan(
                    column,
                    states,
                    hints,
                    plan.add(f"count({ref})"),
                    plan.add(f"approx_count_distinct({distinct_of})"),
                    self._extra_aggregates(column, ref, hints, plan),
                    valid_distinct,
                )
            )

    def _extra_aggregates(
        self, column: Column, ref: str, hints: tuple[PIIKind, ...], plan: ScanPlan
    ) -> dict[str, str]:
        extra: dict[str, str] = {}
        axis = coordinate_axis(column.name)
        if axis is not None and column.type in (CanonicalType.FLOAT, CanonicalType.DECIMAL):
            bound = 90 if axis == "lat" else 180
            x = f"CAST({ref} AS DOUBLE)"
            in_range = f"{x} BETWEEN -{bound} AND {bound}"
            extra["coord_matches"] = plan.add(f"count(*) FILTER (WHERE {in_range})")
            # >= 4 decimals: about 11 m, precise enough to locate a home (PIPL "whereabouts").
            extra["coord_precise"] = plan.add(f"count(*) FILTER (WHERE {in_range} AND round({x}, 3) <> {x})")
        minor = None
        if PIIKind.AGE in hints:
            if column.type.is_numeric:
                minor = f"TRY_CAST({ref} AS DOUBLE)"
            elif column.type is CanonicalType.TEXT:
                minor = f"TRY_CAST(trim(CAST({ref} AS VARCHAR)) AS DOUBLE)"
            if minor is not None:
                extra["minors"] = plan.add(f"count(*) FILTER (WHERE {minor} >= 0 AND {minor} < {MINOR_AGE})")
        elif PIIKind.BIRTH_DATE in hints:
            y, md = divmod(self._cutoff, 10000)
            cutoff = f"DATE '{y:04d}-{md // 100:02d}-{md % 100:02d}'"
            if column.type in (CanonicalType.DATE, CanonicalType.TIMESTAMP, CanonicalType.TIMESTAMPTZ):
                minor = f"CAST({ref} AS DATE)"
            elif column.type is CanonicalType.TEXT:
                minor = f"TRY_CAST({ref} AS DATE)"
            if minor is not None:
                extra["minors"] = plan.add(f"count(*) FILTER (WHERE {minor} > {cutoff})")
        return extra

    def finish(self, plan: ScanPlan, row_count: int) -> PIIReport:
        """Build the report from the executed plan.

        A column is reported only for the kinds it is labelled with (:func:`label_kinds`): content kinds
        when their valid values make up a high share of the column, column-name hints otherwise.
        """
        results: list[ColumnPII] = []
        identified: list[int] = []
        for cp in self._columns:
            detections = self._detections(cp, plan)
            non_null = int(plan[cp.non_null])
            kinds = label_kinds(detections, non_null)
            if not kinds:
                continue
            labelled = [d for d in detections if d.kind in kinds]
            primary = max(labelled, key=lambda d: (d.method == "content", d.valid, d.matches))
            distinct = _distinct(plan[cp.distinct], non_null=plan[cp.non_null], rows=row_count)
            if cp.valid_distinct is not None and any(k in IDENTIFIER_KINDS for k in kinds):
                # Individuals are estimated from validated identifier values only.
                identified.append(min(int(plan[cp.valid_distinct] or 0), distinct))
            results.append(
                ColumnPII(
                    column=cp.column.name,
                    kind=primary.kind,
                    kinds=kinds,
                    matches=primary.matches,
                    valid=primary.valid,
                    sensitive=any(k in SENSITIVE_KINDS for k in kinds),
                    personal=any(k not in NON_PERSONAL_KINDS for k in kinds),
                    detections=tuple(detections),
                    distinct_estimate=distinct,
                )
            )
        return PIIReport(
            tuple(results),
            sensitive=any(c.sensitive for c in results),
            estimated_individuals=_estimate_individuals(results, identified),
            row_count=row_count,
        )

    @staticmethod
    def _detections(cp: _ColumnPlan, plan: ScanPlan) -> list[Detection]:
        detections: list[Detection] = []
        non_null = int(plan[cp.non_null])
        if cp.states is not None:
            counts: dict[int, int] = {int(k): int(v) for k, v in (plan[cp.states] or {}).items()}
            for kind, (match_states, valid_states) in _STATES.items():
                matches = sum(counts.get(st, 0) for st in match_states)
                if matches:
                    valid = sum(counts.get(st, 0) for st in valid_states)
                    detections.append(Detection(kind, "content", matches, valid))
            minors = counts.get(_ST_RIC_MINOR, 0)
            if minors:
                detections.append(Detection(PIIKind.MINOR, "content", minors, minors))
        if "coord_precise" in cp.extra:
            precise = int(plan[cp.extra["coord_precise"]])
            if precise:
                matches = int(plan[cp.extra["coord_matches"]])
                detections.append(Detection(PIIKind.COORDINATES, "column_name", matches, precise))
        if non_null:
            detections.extend(Detection(hint, "column_name", non_null, non_null) for hint in cp.hints)
        if "minors" in cp.extra:
            minors = int(plan[cp.extra["minors"]])
            if minors:
                detections.append(Detection(PIIKind.MINOR, "column_name", minors, minors))
        return detections


def _distinct(estimate: Any, *, non_null: Any, rows: int) -> int:
    # With cell hashes as the distinct source, NULL cells hash to one constant: one extra "value".
    value = int(estimate or 0)
    if int(non_null) < rows and value:
        value -= 1
    return min(value, int(non_null))


def label_kinds(detections: Sequence[Detection], non_null: int) -> tuple[PIIKind, ...]:
    """The kinds a column is labelled with, strongest evidence first (docs: module docstring).

    Content kinds (validated values): the valid values of all content kinds together must be at least
    :data:`LABEL_SHARE` of the non-null values, and each kind kept at least :data:`KIND_SHARE`. Overlaps
    between kinds are already resolved per value by validation strength (ID number before credit code
    before bank card), so the shares add up. Minors found inside valid ID numbers follow their ID
    numbers. Column-name hints (kinds without a content validator) label a column with non-null values;
    a financial hint is dropped when the content is organisations' credit codes.
    """
    if non_null <= 0:
        return ()
    content = [d for d in detections if d.method == "content" and d.kind is not PIIKind.MINOR]
    explained = sum(d.valid for d in content)
    kinds: list[PIIKind] = []
    if explained >= LABEL_SHARE * non_null:
        strong = sorted((d for d in content if d.valid >= KIND_SHARE * non_null), key=lambda d: -d.valid)
        kinds += [d.kind for d in strong]
        if PIIKind.CN_RIC in kinds and any(
            d.kind is PIIKind.MINOR and d.method == "content" and d.valid for d in detections
        ):
            kinds.append(PIIKind.MINOR)
    for d in detections:
        if d.method != "column_name" or d.kind in kinds or not d.valid:
            continue
        if d.kind is PIIKind.COORDINATES and d.valid < LABEL_SHARE * non_null:
            continue  # a lat/lon column whose values are mostly coarse (city level) is not a location
        if d.kind is PIIKind.FINANCIAL and PIIKind.CN_USCC in kinds:
            continue  # "credit code": organisations' unified social credit codes
        kinds.append(d.kind)
    return tuple(kinds)


def _estimate_individuals(columns: Sequence[ColumnPII], identified: Sequence[int]) -> int:
    # Distinct validated identifier values of the best identifier column approximate distinct people.
    best = max(identified, default=0)
    if best == 0:
        # PI without identifiers (names, addresses only): each distinct value may be a person.
        best = max((min(c.distinct_estimate or 0, c.valid) for c in columns if c.personal), default=0)
    return best


def cross_check(conn: SourceConnection, report: PIIReport, *, sample_rows: int = 2000) -> PIIReport:
    """Re-validate up to ``sample_rows`` values per detected column with python-stdnum / phonenumbers.

    Values are read from the first rows of the source, stay in this process and are not kept.
    """
    if not report.columns:
        return report
    updated: list[ColumnPII] = []
    for col in report.columns:
        kinds = [k for k in col.kinds if k in _LIBRARY]
        plan = ScanPlan()
        state = _project_state(plan, conn.schema.column(col.column), _cutoff(date.today()))
        if not kinds or state is None:
            updated.append(col)
            continue
        ref = quote_ident(col.column)
        sample = f"(SELECT {ref} FROM {conn.view} WHERE {ref} IS NOT NULL LIMIT {int(sample_rows)})"
        rows = conn.execute(f"SELECT CAST({ref} AS VARCHAR), {state} FROM {plan.relation(sample)}")
        checks: list[CrossCheck] = []
        for kind in kinds:
            match_states, valid_states = _STATES[kind]
            equivalent, full = _LIBRARY[kind]
            values = [(str(v), st) for v, st in rows if st in match_states]
            if not values:
                continue
            sql_ok = [st in valid_states for _, st in values]
            eq = [equivalent(v) for v, _ in values]
            checks.append(
                CrossCheck(
                    kind,
                    checked=len(values),
                    sql_valid=sum(sql_ok),
                    library_valid=sum(full(v) for v, _ in values),
                    disagreements=sum(a != b for a, b in zip(sql_ok, eq, strict=True)),
                )
            )
        updated.append(_replace_checks(col, tuple(checks)))
    return PIIReport(tuple(updated), report.sensitive, report.estimated_individuals, report.row_count)


def _replace_checks(col: ColumnPII, checks: tuple[CrossCheck, ...]) -> ColumnPII:
    from dataclasses import replace

    return replace(col, cross_checks=checks)


def scan_pii(
    conn: SourceConnection, *, reference_date: date | None = None, sample_rows: int = 2000
) -> PIIReport:
    """Detect personal information in every column of an opened source (one scan + a small sample).

    ``sample_rows`` values per detected column are re-validated with python-stdnum/phonenumbers
    (0 disables the cross-check).

    Raises:
        SourceError: the source cannot be read.
    """
    plan = ScanPlan()
    pii = PIIPlan(conn.schema, plan, reference_date=reference_date)
    rows = plan.add("count(*)")
    conn.run_plan(plan)
    report = pii.finish(plan, int(plan[rows]))
    return cross_check(conn, report, sample_rows=sample_rows) if sample_rows else report
