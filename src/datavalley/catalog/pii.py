"""Personal information (PI) detection per column, exact counts computed inside DuckDB.

Content detectors look at whole cell values (free-text scanning is out of scope) of text columns and of
integer columns (a CSV column of phone numbers is read as BIGINT). Each value is claimed by at most one
content detector, in this order, so that overlapping shapes (an 18-digit ID number is also a valid USCC
*shape* and may pass Luhn) are not double counted:

==============  ==========================================================  =========================
kind            matches (shape)                                             valid
==============  ==========================================================  =========================
``cn_ric``      18 chars, ``[1-9]\\d{16}[\\dXx]``                            birth date is a real date
                                                                            and ISO 7064 MOD 11-2
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
``estimated_individuals`` (HyperLogLog ``approx_count_distinct``, typically within ~2%).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata
from stdnum import luhn
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError

from datavalley.catalog._sql import AggregatePlan, quote_ident, quote_literal
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

_RIC_SHAPE = r"[1-9][0-9]{16}[0-9Xx]"
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_SHAPE = r"[0-9]{8}[0-9A-HJ-NPQRTUWXY]{10}"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_CARD_SHAPE = r"[3-6][0-9]{12,18}"
_MOBILE_PREFIX = r"(?:(?:\+|00)?86[ -]?)?"
_EMAIL_SHAPE = r"[^@\s]+@[^@\s]+"
_EMAIL_VALID = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
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


def _ric_terms(n: str) -> str:
    lo = f"({n} % 1000000000)"
    hi = f"({n} // 1000000000)"
    terms = [f"{_RIC_C[0]} * {lo}"]
    terms += [f"{_RIC_C[j]} * ({lo} // {10**j})" for j in range(1, 9)]
    terms.append(f"{_RIC_K} * {hi}")
    terms.append(f"{_RIC_C[9]} * {hi}")
    terms += [f"{_RIC_C[j]} * ({hi} // {10 ** (j - 9)})" for j in range(10, 17)]
    return " + ".join(terms)


def _ric_date_ok(n: str) -> tuple[str, str]:
    ymd = f"(({n} // 1000) % 100000000)"
    y, m, d = f"({ymd} // 10000)", f"(({ymd} // 100) % 100)", f"({ymd} % 100)"
    leap = f"(CASE WHEN ({y} % 4 = 0 AND {y} % 100 <> 0) OR {y} % 400 = 0 THEN 1 ELSE 0 END)"
    days = f"(CASE WHEN {m} = 2 THEN 28 + {leap} ELSE 30 + (({m} + {m} // 8) % 2) END)"
    return f"({y} >= 1 AND {m} BETWEEN 1 AND 12 AND {d} BETWEEN 1 AND {days})", ymd


def _last_digit(t: str) -> str:
    return f"(CASE WHEN suffix({t}, 'X') OR suffix({t}, 'x') THEN 10 ELSE ord(right({t}, 1)) - 48 END)"


def _luhn_ok(t: str) -> str:
    n = f"CAST({t} AS UBIGINT)"
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


# Value states produced by the per-row classifier (TINYINT); 0 = no content detector matched.
_ST_RIC_BAD, _ST_RIC_OK, _ST_RIC_MINOR = 1, 2, 3
_ST_USCC_BAD, _ST_USCC_OK = 4, 5
_ST_CARD_BAD, _ST_CARD_OK = 6, 7
_ST_MOBILE_BAD, _ST_MOBILE_OK = 8, 9
_ST_EMAIL_BAD, _ST_EMAIL_OK = 10, 11
_ST_PLATE = 12
_ST_LATLON = 13

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


def _text_state_sql(t: str, minor_cutoff: int) -> str:
    """Per-row classifier over a VARCHAR expression ``t`` (a column reference: cheap to repeat)."""
    n = f"TRY_CAST(substr({t}, 1, 17) AS BIGINT)"
    date_ok, ymd = _ric_date_ok(n)
    ric_ok = f"((12 - ({_ric_terms(n)}) % 11) % 11 = {_last_digit(t)})"
    u = f"upper({t})"
    mobile_valid = _MOBILE_PREFIX + "(?:" + cn_mobile_pattern() + ")"
    ric_shape = f"strlen({t}) = 18 AND regexp_full_match({t}, '{_RIC_SHAPE}')"
    uscc_shape = f"strlen({t}) = 18 AND regexp_full_match({u}, '{_USCC_SHAPE}')"
    card_shape = f"strlen({t}) BETWEEN 13 AND 19 AND regexp_full_match({t}, '{_CARD_SHAPE}')"
    mobile_shape = f"strlen({t}) BETWEEN 11 AND 16 AND regexp_full_match({t}, '{_MOBILE_PREFIX}1[0-9]{{10}}')"
    # Valid values are claimed first (ID number, then USCC, then card) so that a value that is valid as
    # one kind is never counted as an invalid other kind; shape-only matches are claimed afterwards.
    # strlen is O(1) on DuckDB strings: the cheap length gates keep the regexps off most values.
    return (
        "(CASE"
        f" WHEN {ric_shape} AND {date_ok} AND {ric_ok} THEN"
        f" (CASE WHEN {ymd} > {minor_cutoff} THEN {_ST_RIC_MINOR} ELSE {_ST_RIC_OK} END)"
        f" WHEN {uscc_shape} AND {_uscc_ok(u)} THEN {_ST_USCC_OK}"
        f" WHEN {card_shape} AND {_luhn_ok(t)} THEN {_ST_CARD_OK}"
        f" WHEN {ric_shape} THEN {_ST_RIC_BAD}"
        f" WHEN {uscc_shape} THEN {_ST_USCC_BAD}"
        f" WHEN {card_shape} THEN {_ST_CARD_BAD}"
        f" WHEN {mobile_shape} THEN"
        f" (CASE WHEN regexp_full_match({t}, {quote_literal(mobile_valid)}) THEN {_ST_MOBILE_OK}"
        f" ELSE {_ST_MOBILE_BAD} END)"
        f" WHEN contains({t}, '@') AND regexp_full_match({t}, '{_EMAIL_SHAPE}') THEN"
        f" (CASE WHEN regexp_full_match({t}, {quote_literal(_EMAIL_VALID)}) THEN {_ST_EMAIL_OK}"
        f" ELSE {_ST_EMAIL_BAD} END)"
        f" WHEN strlen({t}) BETWEEN 9 AND 11 AND regexp_full_match({t}, '{_PLATE}') THEN {_ST_PLATE}"
        f" WHEN contains({t}, ',') OR contains({t}, '，') THEN"
        f" (CASE WHEN regexp_full_match({t}, '{_LATLON}') THEN {_ST_LATLON} ELSE 0 END)"
        " ELSE 0 END)::UTINYINT"
    )


def _integer_state_sql(ref: str, minor_cutoff: int) -> str:
    # Integer columns only need the all-digit detectors; numeric ranges gate the text conversion.
    t = f"CAST({ref} AS VARCHAR)"
    n = f"({ref} // 10)"
    date_ok, ymd = _ric_date_ok(n)
    ric_ok = f"((12 - ({_ric_terms(n)}) % 11) % 11 = ({ref} % 10))"
    mobile_valid = "(?:" + cn_mobile_pattern() + ")"
    return (
        "(CASE"
        f" WHEN {ref} BETWEEN 100000000000000000 AND 999999999999999999 AND {date_ok} THEN"
        f" (CASE WHEN NOT {ric_ok} THEN {_ST_RIC_BAD} WHEN {ymd} > {minor_cutoff} THEN {_ST_RIC_MINOR}"
        f" ELSE {_ST_RIC_OK} END)"
        f" WHEN {ref} BETWEEN 10000000000 AND 19999999999 THEN"
        f" (CASE WHEN regexp_full_match({t}, {quote_literal(mobile_valid)}) THEN {_ST_MOBILE_OK}"
        f" ELSE {_ST_MOBILE_BAD} END)"
        f" WHEN {ref} >= 3000000000000 AND {ref} < 7000000000000000000 AND regexp_full_match({t}, '{_CARD_SHAPE}')"
        f" THEN (CASE WHEN {_luhn_ok(t)} THEN {_ST_CARD_OK} ELSE {_ST_CARD_BAD} END)"
        " ELSE 0 END)::UTINYINT"
    )


def _state_sql(column: Column, minor_cutoff: int) -> str | None:
    ref = quote_ident(column.name)
    if column.type is CanonicalType.TEXT:
        if column.source_type.upper() != "VARCHAR":
            return _text_state_sql(f"CAST({ref} AS VARCHAR)", minor_cutoff)
        return _text_state_sql(ref, minor_cutoff)
    if column.type is CanonicalType.INTEGER:
        if column.source_type.upper() in ("TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT"):
            return None  # cannot hold 11+ digit identifiers
        return _integer_state_sql(f"CAST({ref} AS HUGEINT)", minor_cutoff)
    return None


def sql_valid(con: Any, kind: PIIKind, values: Sequence[str]) -> list[bool]:
    """Run the SQL validator for ``kind`` over ``values`` (test and cross-check helper)."""
    if kind not in _STATES:
        raise ValueError(f"{kind} has no content validator")
    cutoff = int(date.today().strftime("%Y%m%d"))
    valid_states = _STATES[kind][1]
    rows = con.execute(
        f"SELECT {_text_state_sql('v', cutoff)} FROM unnest($values::VARCHAR[]) AS t(v)",
        {"values": list(values)},
    ).fetchall()
    return [r[0] in valid_states for r in rows]


def _ric_equivalent(value: str) -> bool:
    # python-stdnum cn.ric without the birth-place lookup (which the SQL validator omits on purpose).
    v = ric.compact(value)
    if len(v) != 18 or not v[:-1].isdigit() or v[0] == "0":
        return False
    try:
        ric.get_birth_date(v)
    except ValidationError:
        return False
    return v[-1] == ric.calc_check_digit(v)


def _mobile_valid(value: str) -> bool:
    try:
        number = phonenumbers.parse(value, "CN")
    except phonenumbers.NumberParseException:
        return False
    return (
        number.country_code == 86
        and phonenumbers.is_valid_number(number)
        and phonenumbers.number_type(number)
        in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    )


def _card_valid(value: str) -> bool:
    return 13 <= len(value) <= 19 and value.isdigit() and value[0] in "3456" and luhn.is_valid(value)


_LIBRARY: dict[PIIKind, tuple[Callable[[str], bool], Callable[[str], bool]]] = {
    # kind: (check equivalent to the SQL validator, the library's full verdict)
    PIIKind.CN_RIC: (_ric_equivalent, ric.is_valid),
    PIIKind.CN_USCC: (uscc.is_valid, uscc.is_valid),
    PIIKind.BANK_CARD: (_card_valid, _card_valid),
    PIIKind.CN_MOBILE: (_mobile_valid, _mobile_valid),
}


def library_valid(kind: PIIKind, value: str) -> bool:
    """The python-stdnum / phonenumbers verdict for ``value`` as ``kind`` (full library semantics)."""
    return _LIBRARY[kind][1](value)


# --- the scan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ColumnPlan:
    column: Column
    state_alias: str | None
    state_counts: dict[int, str]
    hints: tuple[PIIKind, ...]
    non_null: str
    distinct: str
    extra: dict[str, str]


class PIIPlan:
    """Registers the PI aggregates in a shared :class:`AggregatePlan`.

    The per-row classifier of column *i* must be projected as ``state_columns()[i]`` in the scanned
    relation (see :meth:`projections`).
    """

    def __init__(self, schema: Schema, plan: AggregatePlan, *, reference_date: date | None = None) -> None:
        self.schema = schema
        today = reference_date or date.today()
        try:
            cutoff_date = today.replace(year=today.year - MINOR_AGE)
        except ValueError:  # 29 February
            cutoff_date = today.replace(year=today.year - MINOR_AGE, day=28)
        self._cutoff = int(cutoff_date.strftime("%Y%m%d"))
        self._cutoff_date = cutoff_date
        self._projections: list[str] = []
        self._columns: list[_ColumnPlan] = []
        for i, column in enumerate(schema.columns):
            ref = quote_ident(column.name)
            state = _state_sql(column, self._cutoff)
            state_alias = None
            counts: dict[int, str] = {}
            if state is not None:
                state_alias = f"__dv_pii_{i}"
                self._projections.append(f"{state} AS {state_alias}")
                for st in range(1, 14):
                    counts[st] = plan.add(f"count(*) FILTER (WHERE {state_alias} = {st})")
            hints = tuple(name_hints(column.name))
            extra = self._extra_aggregates(column, ref, hints, plan)
            self._columns.append(
                _ColumnPlan(
                    column,
                    state_alias,
                    counts,
                    hints,
                    plan.add(f"count({ref})"),
                    plan.add(f"approx_count_distinct({ref})"),
                    extra,
                )
            )

    def _extra_aggregates(
        self, column: Column, ref: str, hints: tuple[PIIKind, ...], plan: AggregatePlan
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
        if PIIKind.AGE in hints:
            if column.type.is_numeric:
                age = f"TRY_CAST({ref} AS DOUBLE)"
            elif column.type is CanonicalType.TEXT:
                age = f"TRY_CAST(trim(CAST({ref} AS VARCHAR)) AS DOUBLE)"
            else:
                age = None
            if age is not None:
                extra["minors"] = plan.add(f"count(*) FILTER (WHERE {age} >= 0 AND {age} < {MINOR_AGE})")
        if PIIKind.BIRTH_DATE in hints:
            cutoff = f"DATE '{self._cutoff_date.isoformat()}'"
            if column.type in (CanonicalType.DATE, CanonicalType.TIMESTAMP, CanonicalType.TIMESTAMPTZ):
                born = f"CAST({ref} AS DATE)"
            elif column.type is CanonicalType.TEXT:
                born = f"TRY_CAST({ref} AS DATE)"
            else:
                born = None
            if born is not None:
                extra["minors"] = plan.add(f"count(*) FILTER (WHERE {born} > {cutoff})")
        return extra

    def projections(self) -> list[str]:
        """Per-row classifier columns to add to the scanned relation."""
        return list(self._projections)

    def finish(self, plan: AggregatePlan, row_count: int) -> PIIReport:
        """Build the report from the executed plan."""
        results: list[ColumnPII] = []
        individuals = 0
        any_personal = False
        for cp in self._columns:
            detections: list[Detection] = []
            non_null = int(plan[cp.non_null])
            if cp.state_alias is not None:
                counts = {st: int(plan[alias]) for st, alias in cp.state_counts.items()}
                for kind, (match_states, valid_states) in _STATES.items():
                    matches = sum(counts[s] for s in match_states)
                    if matches:
                        valid = sum(counts[s] for s in valid_states)
                        detections.append(Detection(kind, "content", matches, valid))
                if counts[_ST_RIC_MINOR]:
                    detections.append(
                        Detection(PIIKind.MINOR, "content", counts[_ST_RIC_MINOR], counts[_ST_RIC_MINOR])
                    )
            if "coord_precise" in cp.extra:
                matches = int(plan[cp.extra["coord_matches"]])
                precise = int(plan[cp.extra["coord_precise"]])
                if precise:
                    detections.append(Detection(PIIKind.COORDINATES, "column_name", matches, precise))
            for hint in cp.hints:
                if non_null:
                    detections.append(Detection(hint, "column_name", non_null, non_null))
            if "minors" in cp.extra:
                minors = int(plan[cp.extra["minors"]])
                if minors:
                    detections.append(Detection(PIIKind.MINOR, "column_name", minors, minors))
            if not detections:
                continue
            primary = max(detections, key=lambda d: (d.valid, d.matches))
            kinds = tuple(dict.fromkeys(d.kind for d in detections if d.valid))
            if not kinds:
                kinds = (primary.kind,)
            personal = any(k not in NON_PERSONAL_KINDS for k in kinds)
            distinct = int(plan[cp.distinct] or 0)
            if set(kinds) & IDENTIFIER_KINDS:
                identified = max(d.valid for d in detections if d.kind in IDENTIFIER_KINDS)
                individuals = max(individuals, min(distinct, identified))
            any_personal = any_personal or personal
            results.append(
                ColumnPII(
                    column=cp.column.name,
                    kind=primary.kind,
                    kinds=kinds,
                    matches=primary.matches,
                    valid=primary.valid,
                    sensitive=any(k in SENSITIVE_KINDS for k in kinds),
                    personal=personal,
                    detections=tuple(detections),
                    distinct_estimate=distinct,
                )
            )
        if any_personal and individuals == 0:
            # PI without an identifier column (e.g. names and addresses only): every row may be a person.
            individuals = max(
                (min(c.distinct_estimate or 0, c.valid) for c in results if c.personal), default=0
            )
        return PIIReport(
            tuple(results),
            sensitive=any(c.sensitive for c in results),
            estimated_individuals=individuals,
            row_count=row_count,
        )


def cross_check(conn: SourceConnection, report: PIIReport, *, sample_rows: int = 2000) -> PIIReport:
    """Re-validate up to ``sample_rows`` values per detected column with python-stdnum / phonenumbers.

    Values are read from the first rows of the source, stay in this process and are not kept.
    """
    if not report.columns:
        return report
    cutoff = int(date.today().strftime("%Y%m%d"))
    updated: list[ColumnPII] = []
    for col in report.columns:
        kinds = [k for k in col.kinds if k in _LIBRARY]
        column = conn.schema.column(col.column)
        state = _state_sql(column, cutoff)
        if not kinds or state is None:
            updated.append(col)
            continue
        ref = quote_ident(col.column)
        rows = conn.execute(
            f"SELECT CAST({ref} AS VARCHAR), {state} FROM {conn.view} WHERE {ref} IS NOT NULL "
            f"LIMIT {int(sample_rows)}"
        )
        checks: list[CrossCheck] = []
        for kind in kinds:
            match_states, valid_states = _STATES[kind]
            equivalent, full = _LIBRARY[kind]
            sample = [(str(v), s) for v, s in rows if s in match_states]
            if not sample:
                continue
            sql_ok = [s in valid_states for _, s in sample]
            eq = [equivalent(v) for v, _ in sample]
            checks.append(
                CrossCheck(
                    kind,
                    checked=len(sample),
                    sql_valid=sum(sql_ok),
                    library_valid=sum(full(v) for v, _ in sample),
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

    Raises:
        SourceError: the source cannot be read.
    """
    plan = AggregatePlan()
    pii = PIIPlan(conn.schema, plan, reference_date=reference_date)
    rows = plan.add("count(*)")
    conn.run_plan(plan, scan_relation(conn.view, pii.projections()))
    report = pii.finish(plan, int(plan[rows]))
    return cross_check(conn, report, sample_rows=sample_rows) if sample_rows else report


def scan_relation(view: str, projections: Iterable[str]) -> str:
    """The relation scanned by the aggregate plan: the source plus per-row helper columns."""
    extra = list(projections)
    if not extra:
        return view
    return f"(SELECT *, {', '.join(extra)} FROM {view})"
