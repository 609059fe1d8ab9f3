"""Settings: every setting is documented in docs/ARCHITECTURE.md; env overrides the home's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from datavalley.config import SETTINGS_TABLE, Settings
from datavalley.home import init_home, settings_for

DOCS = Path(__file__).parents[1] / "docs" / "ARCHITECTURE.md"


def test_settings_table_matches_model_and_docs() -> None:
    """SETTINGS_TABLE lists every Settings field, and the architecture doc names every env variable."""
    assert {name for name, _, _ in SETTINGS_TABLE} == set(Settings.model_fields)
    doc = DOCS.read_text("utf-8")
    for _, env, _ in SETTINGS_TABLE:
        assert env in doc, f"{env} is not documented in docs/ARCHITECTURE.md"


def test_environment_overrides_home_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """origin comes from datavalley.toml unless DATAVALLEY_ORIGIN is set."""
    home = tmp_path / "h"
    init_home(home, origin="file.example/log")
    assert settings_for(home).origin == "file.example/log"
    monkeypatch.setenv("DATAVALLEY_ORIGIN", "env.example/log")
    assert settings_for(home).origin == "env.example/log"
