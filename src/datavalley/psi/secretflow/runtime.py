"""The managed SecretFlow environment and one party's run in it (docs/PSI.md section 9).

SecretFlow's engine (the ``spu`` package) cannot share datavalley's environment (it needs numpy < 2 and
an old jax), so it gets a virtual environment of its own, created from the pinned ``requirements.txt``
beside this file by :func:`setup` (``datavalley psi secretflow-setup``). Each PSI party is one
subprocess of that environment's interpreter running ``worker.py``; the two parties' subprocesses talk
to each other directly over their own TCP link (TLS, see :mod:`.tls`), our nodes only orchestrate.

Where the environment is: ``DATAVALLEY_SECRETFLOW_PYTHON`` (an interpreter), else
``DATAVALLEY_SECRETFLOW_ENV`` or ``~/.datavalley/secretflow-env`` (a virtual environment).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datavalley.errors import DatavalleyError, InvalidInput, Unavailable

__all__ = [
    "REQUIREMENTS",
    "WORKER",
    "PartyJob",
    "PartyReport",
    "SecretFlowFailed",
    "default_env",
    "locate",
    "run_party",
    "setup",
    "start_party",
]

WORKER = Path(__file__).with_name("worker.py")
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
PROTOCOLS = ("RR22", "KKRT", "ECDH")


class SecretFlowFailed(DatavalleyError):
    """The SecretFlow engine did not complete a run (the peer left, the link failed, a timeout)."""

    code = "psi_engine_failed"
    http_status = 502
    exit_code = 11


def default_env() -> Path:
    env = os.environ.get("DATAVALLEY_SECRETFLOW_ENV")
    return Path(env) if env else Path.home() / ".datavalley" / "secretflow-env"


def _python_of(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def locate(python: Path | None = None) -> Path:
    """The managed interpreter (``python`` if given); :class:`Unavailable` (with the fix) if there is none."""
    if python is None:
        explicit = os.environ.get("DATAVALLEY_SECRETFLOW_PYTHON")
        python = Path(explicit) if explicit else _python_of(default_env())
    if not python.exists():
        raise Unavailable(
            f"the SecretFlow PSI backend is not installed (no interpreter at {python}): run "
            "`datavalley psi secretflow-setup` (or set DATAVALLEY_SECRETFLOW_PYTHON)",
            python=str(python),
        )
    return python


def setup(env: Path | None = None, *, python: str | None = None, quiet: bool = True) -> Path:
    """Create (or refresh) the managed environment at ``env``; returns its interpreter.

    ``python`` is the base interpreter (default: this one; it must be CPython 3.9–3.11 for spu 0.9.5).
    """
    env = env or default_env()
    base = python or sys.executable
    target = _python_of(env)
    if not target.exists():
        subprocess.run([base, "-m", "venv", str(env)], check=True)
    cmd = [str(target), "-m", "pip", "install", "--disable-pip-version-check", "--require-hashes"]
    cmd += ["--only-binary", ":all:", "-r", str(REQUIREMENTS)]
    if quiet:
        cmd.append("-q")
    subprocess.run(cmd, check=True)
    check = subprocess.run(
        [str(target), "-c", "import spu.psi, spu.libspu.link; print('ok')"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0 or "ok" not in check.stdout:
        raise Unavailable(f"the SecretFlow environment at {env} does not import spu: {check.stderr[-400:]}")
    return target


@dataclass(frozen=True)
class PartyJob:
    """One party's part of a run (the JSON the worker reads, see worker.py)."""

    link_id: str
    rank: int
    parties: tuple[str, str]
    protocol: str
    input: Path
    key: str
    output: Path
    workdir: Path
    receiver_rank: int = 0
    timeout_s: float = 600.0
    connect_retries: int = 120
    tls: tuple[Path, Path, Path] | None = None  # own certificate, own key, the peer's certificate

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InvalidInput(
                f"SecretFlow protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}",
                field="protocol",
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "v": "dv-sf-party/1",
            "link_id": self.link_id,
            "rank": self.rank,
            "parties": list(self.parties),
            "protocol": self.protocol,
            "receiver_rank": self.receiver_rank,
            "input": str(self.input.resolve()),
            "key": self.key,
            "output": str(self.output.resolve()),
            "report": str((self.workdir / f"report-{self.rank}.json").resolve()),
            "timeout_s": self.timeout_s,
            "connect_retries": self.connect_retries,
            "tls": None
            if self.tls is None
            else {"cert": str(self.tls[0]), "key": str(self.tls[1]), "ca": str(self.tls[2])},
        }


@dataclass(frozen=True)
class PartyReport:
    """What the engine said: ``intersection_count`` is None on the sender (it learns nothing)."""

    intersection_count: int | None
    original_count: int
    seconds: float


class RunningParty:
    """A started party: :meth:`wait` for its report (raises :class:`SecretFlowFailed`)."""

    def __init__(self, job: PartyJob, process: subprocess.Popen[bytes], log: Path) -> None:
        self.job = job
        self.process = process
        self.log = log

    def wait(self) -> PartyReport:
        try:
            self.process.wait(timeout=self.job.timeout_s + 30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise SecretFlowFailed(f"SecretFlow run {self.job.link_id} timed out") from None
        report_path = Path(self.job.to_json()["report"])
        try:
            result = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = {"ok": False, "error": f"the engine exited with status {self.process.returncode}"}
        if not result.get("ok"):
            raise SecretFlowFailed(
                f"SecretFlow run {self.job.link_id} failed: {result.get('error')} (engine log: {self.log})",
                link_id=self.job.link_id,
            )
        count = int(result["intersection_count"])
        return PartyReport(
            intersection_count=None if count < 0 else count,
            original_count=int(result["original_count"]),
            seconds=float(result["seconds"]),
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_party(job: PartyJob, python: Path | None = None) -> RunningParty:
    """Start ``job`` in the managed environment; its temporary files stay inside ``job.workdir``."""
    python = locate(python)
    job.workdir.mkdir(parents=True, exist_ok=True)
    tmp = job.workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    log = job.workdir / f"engine-{job.rank}.log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(job.workdir),
        "TMPDIR": str(tmp),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), "-I", str(WORKER)],  # -I: the script's folder is not on sys.path
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=job.workdir,
            env=env,
        )
    assert process.stdin is not None
    process.stdin.write(json.dumps(job.to_json()).encode())
    process.stdin.close()
    return RunningParty(job, process, log)


def run_party(job: PartyJob, python: Path | None = None) -> PartyReport:
    """Run ``job`` to its end (both parties must run at the same time, each calling this)."""
    return start_party(job, python).wait()


def remove(path: Path) -> None:
    """Delete a session's files (inputs are derived from registered data: they must not linger)."""
    deadline = time.monotonic() + 5
    while path.exists():
        shutil.rmtree(path, ignore_errors=True)
        if time.monotonic() > deadline:
            break
