"""The documentation is executed: every ```sh block of README.md and docs/GUIDE.md runs, in order, as one
bash script per document, against a fresh home and a real `datavalley serve` the document starts itself.

How a document takes part (docs/GUIDE.md, "Writing runnable docs"):
- fence commands as ```sh; they run with ``set -euo pipefail`` in a fresh working directory with a fresh
  ``$HOME`` (so ``~/.datavalley`` is new) and the blocks of one document share one shell;
- ```text (or any other fence) is for output and pseudo-commands, never run;
- the document starts its servers in the background (``datavalley serve … &``) and waits with
  ``datavalley --server URL health --wait 60``; the runner ends them (its process group) afterwards;
- ports 8000 (exchange) and 8100 (PSI node) are rewritten to free ports, so parallel runs do not collide.
Add a document to DOCS to run it too.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/GUIDE.md"]
FENCE = re.compile(r"^```sh[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
PORTS = (8000, 8100)


def shell_blocks(text: str) -> list[str]:
    """The ```sh blocks of a Markdown document, in order."""
    return [m.group(1) for m in FENCE.finditer(text)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def script_for(doc: str) -> str:
    blocks = shell_blocks((ROOT / doc).read_text(encoding="utf-8"))
    assert blocks, f"{doc} has no ```sh blocks"
    body = "\n".join(f"# --- {doc} block {i + 1}\n{b}" for i, b in enumerate(blocks))
    for port in PORTS:
        body = re.sub(rf"(?<=[:= ]){port}\b", str(_free_port()), body)
    return "set -euo pipefail\nexport PS4='+ [doc] '\nset -x\n" + body + "\necho DOC-RUN-OK\n"


def test_shell_blocks_are_found_in_order() -> None:
    text = "intro\n```sh\necho one\n```\n```text\nnot run\n```\n```sh\necho two\n```\n"
    assert shell_blocks(text) == ["echo one\n", "echo two\n"]


@pytest.mark.parametrize("doc", DOCS)
def test_document_runs(doc: str, tmp_path: Path) -> None:
    script = script_for(doc)
    home = tmp_path / "user-home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (tmp_path / "doc.sh").write_text(script, encoding="utf-8")
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATAVALLEY_")},
        "HOME": str(home),
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "COLUMNS": "120",
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),
    }
    proc = subprocess.Popen(
        ["bash", str(tmp_path / "doc.sh")],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        # the servers the document started in the background share its process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    tail = "\n".join(out.splitlines()[-60:])
    assert proc.returncode == 0 and "DOC-RUN-OK" in out, f"{doc} failed (exit {proc.returncode}):\n{tail}"
    assert "Traceback" not in out, tail
