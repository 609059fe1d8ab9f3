"""A newcomer's first commands, through the real console script in a subprocess: usage and input errors
are one line and exit 2 (domain errors keep their codes), never a traceback; global options work before
and after the subcommand; every command and option has help; the node home rules of registration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from datavalley.cli.main import app, hoist_global_options

SCRIPT = str(Path(sys.executable).parent / "datavalley")


def dv(
    *args: str, home: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATAVALLEY_")}
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, timeout=120, env={**clean, **(env or {})}
    )


def one_line_error(p: subprocess.CompletedProcess[str], code: int) -> str:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    h = tmp_path_factory.mktemp("first") / "home"
    p = dv("init", "--home", str(h), "--get", "token")  # global options after the subcommand
    assert p.returncode == 0, p.stderr
    return h, p.stdout.strip()


def test_usage_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    assert "Did you mean 'participants'" in one_line_error(dv("partcipants", "list"), 2)
    assert "Missing argument" in one_line_error(dv("participants", "show"), 2)
    assert "Invalid value for '--start'" in one_line_error(
        dv("ledger", "entries", "--start", "x", "--token", "t"), 2
    )
    assert "No such option: --colour" in one_line_error(dv("whoami", "--colour"), 2)
    missing = one_line_error(
        dv(
            "products",
            "create",
            "--name",
            "n",
            "--kind",
            "file_delivery",
            "--resource",
            "r",
            "--price",
            "{}",
            "--terms",
            f"@{tmp_path / 'nope.json'}",
            "--token",
            "t",
            "--server",
            "http://127.0.0.1:9",
        ),
        2,
    )
    assert "nope.json" in missing
    bare = dv()
    assert bare.returncode == 2 and "Usage: datavalley" in bare.stdout and "Traceback" not in bare.stderr


def test_json_errors_and_domain_exit_codes() -> None:
    p = dv("whoami", "--json")
    line = one_line_error(p, 3)
    assert json.loads(line)["error"] == "unauthenticated"
    assert "no API token" in one_line_error(dv("whoami"), 3)


def test_global_options_before_or_after(home: tuple[Path, str]) -> None:
    h, token = home
    before = dv("--home", str(h), "--token", token, "--json", "whoami")
    after = dv("whoami", "--json", "--token", token, f"--home={h}")
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert hoist_global_options(["query", "run", "--", "--json"]) == ["query", "run", "--", "--json"]


def test_server_registration_needs_a_node_home(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n", encoding="utf-8")
    p = dv(
        "resources",
        "register",
        str(data),
        "--name",
        "n",
        "--sector",
        "transport",
        "--lawful-source",
        "x",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "dvt_x",
    )
    assert "needs this node's home" in one_line_error(p, 2)  # refused before any network call


def test_every_command_and_option_has_help() -> None:
    root = typer.main.get_command(app)
    missing: list[str] = []

    def walk(cmd: object, path: list[str]) -> None:
        if hasattr(cmd, "list_commands"):
            if path and not (getattr(cmd, "help", "") or "").strip():
                missing.append(" ".join(path))
            for name in cmd.list_commands(None):  # type: ignore[attr-defined]
                walk(cmd.get_command(None, name), [*path, name])  # type: ignore[attr-defined]
            return
        if not (getattr(cmd, "help", "") or "").strip():
            missing.append(" ".join(path))
        missing.extend(
            f"{' '.join(path)} {p.name}" for p in getattr(cmd, "params", []) if not getattr(p, "help", None)
        )

    walk(root, [])
    assert missing == []


def test_attach_checks_holder_and_fingerprint(home: tuple[Path, str], tmp_path: Path) -> None:
    h, op_token = home
    base = ["--home", str(h)]
    reg = dv(
        *base,
        "--token",
        op_token,
        "participants",
        "register",
        "--name",
        "Attach Co",
        "--registry-id",
        "91520115MA6DX3WR5J",
        "--role",
        "provider",
        "--admin-name",
        "A",
        "--get",
        "data.participant.id,data.admin_member.id",
    )
    pid, admin = reg.stdout.split()
    assert dv(*base, "--token", op_token, "participants", "verify", pid).returncode == 0
    token = dv(*base, "--token", op_token, "tokens", "issue", admin, "--get", "data.secret").stdout.strip()
    data = tmp_path / "trips.csv"
    assert dv("sample-data", "trips", str(data), "--rows", "300").returncode == 0
    rid = dv(
        *base,
        "--token",
        token,
        "resources",
        "register",
        str(data),
        "--name",
        "t",
        "--sector",
        "transport",
        "--lawful-source",
        "contracts",
        "--get",
        "data.id",
    ).stdout.strip()
    moved = tmp_path / "archive.csv"
    data.rename(moved)
    other = tmp_path / "other.csv"
    assert dv("sample-data", "trips", str(other), "--rows", "300", "--seed", "9").returncode == 0
    registry = h / "node" / "resources.json"
    before = registry.read_text()
    wrong = dv(*base, "--token", token, "resources", "attach", rid, str(other))
    assert "is not the registered data" in one_line_error(wrong, 6)
    not_holder = dv(*base, "--token", op_token, "resources", "attach", rid, str(moved))
    assert "only the holder" in one_line_error(not_holder, 4)
    assert registry.read_text() == before  # nothing changed by the refusals
    ok = dv(*base, "--token", token, "--json", "resources", "attach", rid, str(moved))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(registry.read_text())[rid]["location"] == str(moved)
