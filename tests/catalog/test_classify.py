"""Grading rules load strictly, and the suggested grade follows the matching rules on real analyses."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datavalley.catalog import DEFAULT_RULES, Analysis, Grade, RuleSet, SourceError, analyze
from datavalley.catalog.classify import suggest_grade
from datavalley.catalog.pii import PIIKind

from .conftest import make_ric


def _rules(*rules: dict[str, Any]) -> RuleSet:
    return RuleSet.from_dict({"version": 1, "rules": list(rules)})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], r"must be a JSON object, not list"),
        ({"rules": [], "extra": 1}, r"unknown top-level key\(s\): extra"),
        ({"version": 2, "rules": []}, r"version: unsupported 2"),
        ({"version": True, "rules": []}, r"version: unsupported True"),
        ({"rules": {}}, r"rules: must be a list"),
        ({"rules": ["x"]}, r"rules\[0\]: must be an object, not str"),
        ({"rules": [{"grade": "core", "min_rows": 1}]}, r"rules\[0\]\.id: must be a non-empty string"),
        ({"rules": [{"id": "a", "grade": "high", "min_rows": 1}]}, r"rules\[0\] \(a\)\.grade: 'high' is not"),
        ({"rules": [{"id": "a", "grade": "core"}]}, r"rules\[0\] \(a\): has no condition"),
        ({"rules": [{"id": "a", "grade": "core", "min_row": 1}]}, r"unknown key\(s\) min_row; allowed:"),
        ({"rules": [{"id": "a", "grade": "core", "min_rows": -1}]}, r"min_rows: must be a non-negative"),
        ({"rules": [{"id": "a", "grade": "core", "min_rows": True}]}, r"min_rows: must be a non-negative"),
        ({"rules": [{"id": "a", "grade": "core", "sectors": []}]}, r"sectors: must be a non-empty list"),
        ({"rules": [{"id": "a", "grade": "core", "sectors": [" "]}]}, r"sectors\[0\]: must be a non-empty"),
        (
            {"rules": [{"id": "a", "grade": "core", "pii_kinds": ["dna"]}]},
            r"pii_kinds: .*known kinds: cn_ric",
        ),
        (
            {
                "rules": [
                    {"id": "a", "grade": "core", "min_rows": 1},
                    {"id": "a", "grade": "core", "min_rows": 2},
                ]
            },
            r"rules\[1\]\.id: duplicate id 'a'",
        ),
    ],
)
def test_rule_set_validation_names_the_problem(data: Any, message: str) -> None:
    with pytest.raises(SourceError, match=message) as info:
        RuleSet.from_dict(data, origin="rules.json")
    assert info.value.location == "rules.json"


def test_round_trip_and_json_loading(tmp_path: Path) -> None:
    assert RuleSet.from_dict(DEFAULT_RULES.to_dict()) == DEFAULT_RULES
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(DEFAULT_RULES.to_dict(), ensure_ascii=False), encoding="utf-8")
    assert RuleSet.from_json(path) == DEFAULT_RULES
    assert RuleSet.from_json(json.dumps(DEFAULT_RULES.to_dict())) == DEFAULT_RULES
    # The default set never proposes core data: that takes a rule an operator adds on purpose.
    assert all(r.grade is not Grade.CORE for r in DEFAULT_RULES.rules)


def test_json_errors_give_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"version": 1,\n "rules": [,]}', encoding="utf-8")
    with pytest.raises(SourceError, match=r"invalid JSON at line 2 column 12") as info:
        RuleSet.from_json(path)
    assert info.value.location == str(path.resolve())
    with pytest.raises(SourceError, match="cannot read rule file"):
        RuleSet.from_json(tmp_path / "missing.json")


def _people(tmp_path: Path, individuals: int, *, name: str = "patients.parquet") -> Path:
    """One row per person: a valid ID number, a diagnosis and a city (no other identifiers)."""
    rnd = random.Random(individuals)
    ids: set[str] = set()
    while len(ids) < individuals:
        ids.add(make_ric(rnd))
    path = tmp_path / name
    table = pa.table(
        {
            "id_no": sorted(ids),
            "diagnosis": [rnd.choice(["I10", "E11", "J45"]) for _ in range(individuals)],
            "city": [rnd.choice(["杭州", "宁波"]) for _ in range(individuals)],
        }
    )
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def patients(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analyze(_people(tmp_path_factory.mktemp("classify"), 12_000), sector="health")


def test_population_health_rule_on_real_analysis(patients: Analysis) -> None:
    # 12,000 distinct people with health data in the health sector: >= 10,000 -> important.
    assert abs(patients.pii.estimated_individuals - 12_000) <= 0.03 * 12_000
    assert {PIIKind.CN_RIC, PIIKind.HEALTH} <= patients.pii.kinds
    assert patients.suggestion.grade is Grade.IMPORTANT
    (reason,) = patients.suggestion.reasons
    assert reason.startswith("population-health -> important")
    assert "sector 'health' matches 'health'" in reason and "diagnosis (health)" in reason


def test_same_data_outside_health_sector_is_general(patients: Analysis) -> None:
    other = suggest_grade(patients.schema, patients.pii, patients.profile, "retail")
    assert other.grade is Grade.GENERAL and other.reasons == ("no rule matched: general data",)


def test_below_threshold_is_general(tmp_path: Path) -> None:
    small = analyze(_people(tmp_path, 2_000), sector="health")
    assert small.pii.estimated_individuals < 10_000
    assert small.suggestion.grade is Grade.GENERAL


def test_highest_grade_wins_and_reasons_are_ordered(patients: Analysis) -> None:
    individuals = patients.pii.estimated_individuals
    rules = _rules(
        {"id": "many-rows", "grade": "important", "min_rows": 1},
        {"id": "ids", "grade": "core", "pii_kinds": ["cn_ric"], "min_sensitive_individuals": individuals},
        {"id": "too-many", "grade": "core", "min_individuals": individuals + 1},
        {"id": "keyword", "grade": "important", "column_keywords": ["DIAG"], "sectors": ["HEAL"]},
    )
    got = suggest_grade(patients.schema, patients.pii, patients.profile, "Health-care", rules)
    assert got.grade is Grade.CORE
    assert [r.split(" ")[0] for r in got.reasons] == ["ids", "many-rows", "keyword"]
    assert f"~{individuals:,} individuals with sensitive PI (diagnosis, id_no)" in got.reasons[0]
    assert "columns diagnosis match DIAG" in got.reasons[2]


def test_organisation_codes_are_not_individuals(tmp_path: Path) -> None:
    # A table of companies (USCC codes) holds no personal information, so no PI-scale rule applies.
    from .conftest import make_uscc

    rnd = random.Random(3)
    path = tmp_path / "firms.parquet"
    pq.write_table(pa.table({"uscc": [make_uscc(rnd) for _ in range(500)]}), path)
    firms = analyze(path, sector="finance")
    rules = _rules({"id": "pi", "grade": "important", "min_individuals": 1})
    assert firms.pii.kinds == {PIIKind.CN_USCC} and not firms.pii.personal_columns
    assert suggest_grade(firms.schema, firms.pii, firms.profile, "finance", rules).grade is Grade.GENERAL
