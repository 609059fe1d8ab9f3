"""Shared fixtures: an initialised exchange on SQLite *and* on a real PostgreSQL server, and API clients.

Storage-dependent tests take the ``exchange`` fixture (or anything built on it) and so run once per backend.
PostgreSQL comes from tests/pgserver.py; without binaries it skips locally and fails when CI=true.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from stdnum.cn import uscc

from datavalley.api.app import create_app
from datavalley.client import Client
from datavalley.exchange import Exchange
from datavalley.home import init_home, settings_for
from datavalley.identity.model import Member, Participant
from pgserver import PostgresServer, require_postgres

_db_counter = itertools.count()
_uscc_counter = itertools.count(1000)


def make_uscc(prefix: str = "9144030027958") -> str:
    """A fresh, valid unified social credit code (check character computed by python-stdnum)."""
    base = f"{prefix}{next(_uscc_counter):04d}"[:17]
    return base + uscc.calc_check_digit(base)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    require_postgres()
    with PostgresServer(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None means the embedded SQLite default in the home; otherwise a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = f"dv_test_{next(_db_counter)}"
    yield server.create_database(name)
    server.drop_database(name)


class Clock:
    """A controllable UTC clock for the exchange."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class World:
    """An initialised exchange with its operator's token and an API client for it."""

    exchange: Exchange
    home: Path
    clock: Clock
    operator_token: str
    operator_participant: str
    operator_member: str
    client_for: Callable[[str | None], Client]

    @property
    def operator(self) -> Client:
        return self.client_for(self.operator_token)

    def onboard(
        self, name: str, roles: list[str], *, kind: str = "enterprise", verify: bool = True
    ) -> tuple[Participant, Member, str]:
        """Register (and verify) an organisation; return it, its admin and an admin token."""
        op = self.operator
        reg = op.register_participant(
            name=name, kind=kind, registry_id=make_uscc(), roles=roles, admin_name=f"admin of {name}"
        )
        participant, admin = reg.value
        if verify:
            participant = op.change_participant_status(participant.id, "verify").value
        token = op.issue_token(admin.id).value.secret
        return participant, admin, token


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def world(tmp_path: Path, database_url: str | None, clock: Clock) -> Iterator[World]:
    home = tmp_path / "home"
    done = init_home(home, database_url=database_url)
    ex = Exchange.open(settings_for(home), clock=clock)
    app = create_app(ex)
    clients: list[Client] = []

    def client_for(token: str | None) -> Client:
        c = Client.in_process(app, token)
        clients.append(c)
        return c

    yield World(ex, home, clock, done.token.secret, done.operator.id, done.admin.id, client_for)
    for c in clients:
        c.close()
    ex.close()


@pytest.fixture
def exchange(world: World) -> Exchange:
    return world.exchange
