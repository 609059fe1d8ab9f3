"""libsodium comes from the rbcl wheel (no system package): extracted once, 0600, and it works."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from datavalley.psi import _sodium


def test_bundled_library_is_extracted_once_and_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = _sodium.bundled_library()
    assert first is not None and first.startswith(str(tmp_path))
    mode = stat.S_IMODE(os.stat(first).st_mode)
    assert mode == 0o600
    mtime = os.stat(first).st_mtime_ns
    assert _sodium.bundled_library() == first
    assert os.stat(first).st_mtime_ns == mtime  # reused, not rewritten
    assert [p.name for p in (tmp_path / "datavalley").iterdir() if p.suffix == ".tmp"] == []


def test_loaded_sodium_is_the_bundled_one_and_has_ristretto() -> None:
    lib = _sodium.sodium()
    assert lib.version >= "1.0.18"
    ffi = lib.ffi
    h = ffi.new("unsigned char[64]", bytes(range(64)))
    p = ffi.new("unsigned char[32]")
    assert lib.lib.crypto_core_ristretto255_from_hash(p, h) == 0
    assert lib.lib.crypto_core_ristretto255_is_valid_point(p) == 1
    assert _sodium.bundled_library() is not None
