"""A throwaway PostgreSQL server for the test suite.

The server is built from the machine's PostgreSQL binaries (``initdb``, ``pg_ctl``, ``postgres``)
in a fresh temporary directory, listens on ``127.0.0.1`` on a free port plus a unix socket in that
directory, and is torn down (``pg_ctl stop -m immediate`` and directory removal) on ``stop()``,
on leaving the ``with`` block, and at interpreter exit.

PostgreSQL refuses to run as root.  When the effective uid is 0 every server process runs as the
``postgres`` system user (override with ``DATAVALLEY_PG_USER``) by way of ``subprocess``'s
``user=``/``group=``/``extra_groups=`` arguments; the working directory is created below a
directory that user can traverse and is chowned to it.

Typical use::

    reason = require_postgres()  # skips locally / fails on CI when PostgreSQL is missing
    with PostgresServer(tmp_dir) as pg:
        url = pg.create_database("app")  # postgresql+psycopg://postgres@127.0.0.1:PORT/app
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
import pytest
from psycopg import sql

__all__ = [
    "PG_UNAVAILABLE_REASON",
    "PostgresServer",
    "PostgresServerError",
    "find_pg_bin",
    "require_postgres",
    "unavailable_reason",
]

REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "postgres"
HOST = "127.0.0.1"
DIR_PREFIX = "datavalley-pg-"
OWNER_FILE = "owner.pid"
# sun_path is 108 bytes on Linux; leave room for "/.s.PGSQL.65535" and the terminating NUL.
_MAX_SOCKET_DIR_LEN = 90

# Computed lazily (module ``__getattr__`` below): the reason PostgreSQL tests cannot run, or None.
PG_UNAVAILABLE_REASON: str | None


class PostgresServerError(RuntimeError):
    """The throwaway server could not be created, started or used."""


# --------------------------------------------------------------------------------------------
# discovery


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in REQUIRED_BINARIES)


def _version_key(directory: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin -> (<version parts>)
    return tuple(int(part) for part in re.findall(r"\d+", directory.parent.name))


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb``/``pg_ctl``/``postgres``, or None.

    Order: ``$DATAVALLEY_PG_BIN`` (if set it must be valid, otherwise None), then the highest
    version of ``/usr/lib/postgresql/*/bin``, then the directory of ``initdb``/``pg_ctl`` on PATH
    (symlinks resolved, as Debian only links some tools into PATH).
    """
    configured = os.environ.get("DATAVALLEY_PG_BIN")
    if configured:
        path = Path(configured).expanduser()
        return path if _has_binaries(path) else None

    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_binaries(p)]
    if candidates:
        return max(candidates, key=_version_key)

    for tool in ("initdb", "pg_ctl"):
        found = shutil.which(tool)
        if found:
            directory = Path(found).resolve().parent
            if _has_binaries(directory):
                return directory
    return None


def _run_as_user() -> pwd.struct_passwd | None:
    """The account servers run as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("DATAVALLEY_PG_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresServerError(
            f"running as root and there is no {name!r} system user to run PostgreSQL as "
            "(PostgreSQL refuses to run as root; set DATAVALLEY_PG_USER to another account)"
        ) from None


@functools.cache
def unavailable_reason() -> str | None:
    """Why a throwaway PostgreSQL server cannot be started here, or None if it can (cached)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        configured = os.environ.get("DATAVALLEY_PG_BIN")
        if configured:
            return (
                f"DATAVALLEY_PG_BIN={configured} does not contain executable {', '.join(REQUIRED_BINARIES)}"
            )
        return (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in "
            "/usr/lib/postgresql/*/bin or on PATH; install PostgreSQL (e.g. apt-get install "
            "postgresql) or set DATAVALLEY_PG_BIN"
        )
    try:
        _run_as_user()
    except PostgresServerError as exc:
        return str(exc)
    return None


def __getattr__(name: str) -> Any:
    if name == "PG_UNAVAILABLE_REASON":
        return unavailable_reason()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def require_postgres() -> None:
    """Return None when PostgreSQL is usable; else fail on CI (``CI=true``), skip otherwise."""
    reason = unavailable_reason()
    if reason is None:
        return None
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required on CI: {reason}", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------
# helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid``/``gid`` can search ``path`` and all its ancestors (ignores ACLs)."""
    try:
        groups = {gid, *os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)}
    except KeyError:
        groups = {gid}
    for part in (path, *path.parents):
        st = part.stat()
        if st.st_uid == uid:
            needed = stat.S_IXUSR
        elif st.st_gid in groups:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not st.st_mode & needed:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    with contextlib.suppress(OSError, IndexError):
        # /proc/<pid>/stat: "pid (comm) STATE ..."; comm may contain spaces/parentheses.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no server log: {exc}>"
    return text[-limit:] if text else "<server log is empty>"


_RUNNING: weakref.WeakSet[PostgresServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()


# --------------------------------------------------------------------------------------------
# the server


class PostgresServer:
    """A throwaway PostgreSQL cluster in its own temporary directory.

    ``base_dir`` is where the temporary directory is created; when it is not usable (the server
    user cannot reach it, or the unix socket path would be too long) the system temp dir is used.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        start_timeout: float = 30.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.base_dir = Path(base_dir) if base_dir is not None else Path(tempfile.gettempdir())
        self._bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.settings = dict(settings or {})
        self.host = HOST
        self.port: int | None = None
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = None

    # -- paths / properties -------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            found = find_pg_bin()
            if found is None:
                raise PostgresServerError(unavailable_reason() or "PostgreSQL binaries not found")
            self._bin_dir = found
        return self._bin_dir

    def _require_workdir(self) -> Path:
        if self.workdir is None:
            raise PostgresServerError("server has not been started")
        return self.workdir

    @property
    def data_dir(self) -> Path:
        return self._require_workdir() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._require_workdir() / "sock"

    @property
    def log_path(self) -> Path:
        return self._require_workdir() / "server.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of database ``dbname`` (TCP, trust authentication)."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self._require_port()}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq/psycopg conninfo string for database ``dbname``."""
        return f"host={self.host} port={self._require_port()} user={SUPERUSER} dbname={dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection to ``dbname`` (the caller closes it)."""
        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(self.dsn(dbname), **kwargs)

    def _require_port(self) -> int:
        if self.port is None or not self.running:
            raise PostgresServerError("server is not running")
        return self.port

    # -- process plumbing ---------------------------------------------------------------------

    def _popen_kwargs(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs: dict[str, Any] = {"env": env, "cwd": str(self._require_workdir())}
        if self._user is not None:
            env["HOME"] = self._user.pw_dir
            env["USER"] = env["LOGNAME"] = self._user.pw_name
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        return kwargs

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self._popen_kwargs(),
        )

    def _make_workdir(self) -> Path:
        base = self.base_dir
        base.mkdir(parents=True, exist_ok=True)
        usable = len(str(base.resolve())) + len(DIR_PREFIX) + 16 <= _MAX_SOCKET_DIR_LEN
        if usable and self._user is not None:
            usable = _traversable_by(base.resolve(), self._user.pw_uid, self._user.pw_gid)
        if not usable:
            base = Path(tempfile.gettempdir())
        _reap_stale(base)
        workdir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=base))
        (workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        (workdir / "sock").mkdir(mode=0o700)
        if self._user is not None:
            for path in (workdir, workdir / "sock"):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        return workdir

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """initdb a fresh cluster, start it and wait until it accepts connections."""
        if self.running:
            return self
        reason = unavailable_reason() if self._bin_dir is None else None
        if reason is not None:
            raise PostgresServerError(reason)
        self._user = _run_as_user()
        self.workdir = self._make_workdir()
        _RUNNING.add(self)
        try:
            self._initdb()
            self._start_postgres()
        except BaseException:
            self.stop()
            raise
        return self

    def _initdb(self) -> None:
        result = self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        if result.returncode != 0:
            raise PostgresServerError(
                f"initdb failed (exit {result.returncode}) in {self.data_dir}:\n"
                f"{result.stdout}\n{result.stderr}"
            )

    def _start_postgres(self, attempts: int = 3) -> None:
        settings = {
            "listen_addresses": HOST,
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": "200",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            **self.settings,
        }
        for attempt in range(1, attempts + 1):
            self.port = _free_port()
            cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
            for key, value in settings.items():
                cmd += ["-c", f"{key}={value}"]
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **self._popen_kwargs(),
                )
            if self._wait_ready():
                return
            # The process died: most likely the port was grabbed between probing and binding.
            if attempt < attempts and "could not bind" in _tail(self.log_path):
                continue
            break
        code = self._proc.poll() if self._proc else None
        raise PostgresServerError(
            f"PostgreSQL did not start (exit code {code}, port {self.port}, "
            f"data dir {self.data_dir}). Server log:\n{_tail(self.log_path)}"
        )

    def _wait_ready(self) -> bool:
        """True once the server accepts connections; False if it exited; raise on timeout."""
        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError as exc:
                last_error = exc
            time.sleep(0.05)
        self._terminate()
        raise PostgresServerError(
            f"PostgreSQL did not accept connections within {self.start_timeout:.0f}s "
            f"(port {self.port}, last error: {last_error}). Server log:\n{_tail(self.log_path)}"
        )

    def _terminate(self) -> None:
        """Stop the postmaster immediately and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None and self.workdir is not None and (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", timeout=15)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        self._proc = None

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m immediate``) and remove its directory. Idempotent."""
        try:
            self._terminate()
        finally:
            _RUNNING.discard(self)
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort; normal paths are stop()/__exit__/atexit.
        if getattr(self, "_proc", None) is not None:
            with contextlib.suppress(Exception):
                self.stop()

    # -- databases ----------------------------------------------------------------------------

    def _admin(self) -> psycopg.Connection[Any]:
        return self.connect("postgres", autocommit=True)

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, terminating its sessions."""
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def list_databases(self) -> list[str]:
        with self._admin() as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate").fetchall()
        return sorted(row[0] for row in rows)


def _reap_stale(base: Path) -> None:
    """Stop and remove servers left in ``base`` by test processes that no longer exist."""
    try:
        candidates = list(base.glob(f"{DIR_PREFIX}*"))
    except OSError:
        return
    for workdir in candidates:
        try:
            owner = int((workdir / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or still being set up
        if _pid_alive(owner):
            continue
        pidfile = workdir / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().splitlines()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"postgres" in cmdline and str(workdir).encode() in cmdline:
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
                for _ in range(100):
                    if not _pid_alive(pid):
                        break
                    time.sleep(0.05)
        shutil.rmtree(workdir, ignore_errors=True)
