"""The CLI: init, tokens, keys and ledger commands, JSON output and exit codes from the error tree."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from conftest import make_uscc
from datavalley.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    old = sys.argv
    sys.argv = ["datavalley", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    h = tmp_path / "home"
    code, out, _ = run(capsys, "--home", str(h), "--json", "init")
    assert code == 0
    return h, json.loads(out)["token"]


def test_init_creates_home_with_private_key_0600(home: tuple[Path, str]) -> None:
    """init writes config, database and a 0600 exchange key, and prints a working token once."""
    h, token = home
    key = h / "keys" / "exchange.ed25519.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert (h / "exchange.db").exists() and token.startswith("dvt_")


def test_init_twice_is_a_conflict(home: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    """A second init on the same home exits with the Conflict code and changes nothing."""
    h, _ = home
    before = (h / "datavalley.toml").read_text()
    code, _, err = run(capsys, "--home", str(h), "init")
    assert code == 6 and "already an initialised exchange home" in err
    assert (h / "datavalley.toml").read_text() == before


def test_register_verify_and_list(home: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    """participants register/verify/list work locally with --json and return receipts."""
    h, token = home
    base = ["--home", str(h), "--token", token, "--json"]
    code, out, _ = run(
        capsys,
        *base,
        "participants",
        "register",
        "--name",
        "Bank",
        "--registry-id",
        make_uscc(),
        "--role",
        "consumer",
        "--admin-name",
        "Zhang",
    )
    assert code == 0
    body = json.loads(out)
    pid = body["data"]["participant"]["id"]
    assert body["receipts"][0]["format"] == "datavalley-receipt/v1"
    code, out, _ = run(capsys, *base, "participants", "verify", pid)
    assert code == 0 and json.loads(out)["data"]["status"] == "verified"
    code, out, _ = run(capsys, *base, "participants", "list")
    assert pid in [p["id"] for p in json.loads(out)["items"]]


def test_error_exit_codes(home: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid input exits 2, missing token 3, unknown ID 5, each with the message on stderr."""
    h, token = home
    code, _, err = run(
        capsys,
        "--home",
        str(h),
        "--token",
        token,
        "participants",
        "register",
        "--name",
        "X",
        "--registry-id",
        "91440300279583285X",
        "--role",
        "provider",
        "--admin-name",
        "a",
    )
    assert code == 2 and "unified social credit code" in err
    code, _, err = run(capsys, "--home", str(h), "participants", "list")
    assert code == 3 and "no API token" in err
    code, _, err = run(capsys, "--home", str(h), "--token", token, "participants", "show", "p_unknown")
    assert code == 5 and "p_unknown" in err


def test_keys_new_and_register(
    home: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """keys new writes a 0600 key and refuses to overwrite; keys register proves possession."""
    h, token = home
    key = tmp_path / "k.pem"
    code, out, _ = run(capsys, "--json", "keys", "new", "--out", str(key))
    assert code == 0 and stat.S_IMODE(os.stat(key).st_mode) == 0o600
    pub = json.loads(out)["public_key"]
    code, _, err = run(capsys, "keys", "new", "--out", str(key))
    assert code == 6 and "refusing to overwrite" in err
    code, out, _ = run(capsys, "--home", str(h), "--token", token, "--json", "whoami")
    pid = json.loads(out)["participant_id"]
    code, out, _ = run(
        capsys,
        "--home",
        str(h),
        "--token",
        token,
        "--json",
        "keys",
        "register",
        pid,
        "--private-key",
        str(key),
    )
    assert code == 0 and json.loads(out)["data"]["public_key"] == pub


def test_ledger_export_verify_and_tamper(
    home: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """ledger export + verify succeeds; a tampered bundle exits with the integrity code."""
    h, token = home
    base = ["--home", str(h), "--token", token]
    bundle = tmp_path / "bundle.json"
    assert run(capsys, *base, "ledger", "export", "--out", str(bundle))[0] == 0
    code, out, _ = run(capsys, "--json", "ledger", "verify", str(bundle))
    assert code == 0 and json.loads(out)["findings"] == []
    data = json.loads(bundle.read_text())
    data["entries"].pop()
    bundle.write_text(json.dumps(data))
    code, _, err = run(capsys, "ledger", "verify", str(bundle))
    assert code == 9 and "problem" in err
    code, _, err = run(capsys, "ledger", "verify", str(tmp_path / "missing.json"))
    assert code == 2 and "does not exist" in err
