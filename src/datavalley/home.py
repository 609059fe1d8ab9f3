"""The exchange home: ``datavalley init`` creates it; every other command opens it.

Layout (docs/ARCHITECTURE.md): ``datavalley.toml`` (settings written at init), ``exchange.db`` (embedded
SQLite), ``keys/exchange.ed25519.pem`` (0600, the checkpoint and certificate signing key).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from datavalley.config import Settings, load_settings
from datavalley.errors import Conflict, InvalidInput
from datavalley.exchange import Exchange
from datavalley.identity import service as identity
from datavalley.identity.model import IssuedToken, Member, Participant, ParticipantStatus, Principal
from datavalley.keys import write_private_key
from datavalley.store.db import current_revision, make_engine

CONFIG_FILE = "datavalley.toml"


def settings_for(home: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings for a home: the home's ``datavalley.toml``, overridden by environment, then by arguments."""
    base = load_settings(home, **overrides)
    path = base.home / CONFIG_FILE
    if not path.exists():
        return base
    try:
        stored = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path} is not valid TOML: {exc}", path=str(path)) from exc
    # The environment overrides the file: a set DATAVALLEY_X wins over x in datavalley.toml.
    values = {k: v for k, v in stored.items() if f"DATAVALLEY_{k.upper()}" not in os.environ}
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["home"] = base.home
    return Settings(**values)


@dataclass(frozen=True)
class Initialised:
    """What ``init`` made: the operator participant, its admin member and the one-time token."""

    settings: Settings
    operator: Participant
    admin: Member
    token: IssuedToken


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def init_home(
    home: Path,
    *,
    operator_name: str = "datavalley exchange operator",
    operator_country: str = "ZZ",
    operator_registry_id: str = "LOCAL",
    admin_name: str = "operator admin",
    origin: str | None = None,
    database_url: str | None = None,
) -> Initialised:
    """Create an exchange home: config, database (migrated), exchange key, operator and its first token.

    Raises :class:`Conflict` if the home (or the database) is already initialised.
    """
    home = home.expanduser().resolve()
    if (home / CONFIG_FILE).exists():
        raise Conflict(f"{home} is already an initialised exchange home", home=str(home))
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings = load_settings(home, origin=origin, database_url=database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        if current_revision(engine) is not None:
            raise Conflict(f"database {settings.resolved_database_url} already holds an exchange")
        key = Ed25519PrivateKey.generate()
        write_private_key(settings.exchange_key_path, key)
        config = {"origin": settings.origin}
        if database_url:
            config["database_url"] = database_url
        (home / CONFIG_FILE).write_text(
            "# datavalley exchange home (see docs/ARCHITECTURE.md, 'Settings')\n"
            + "".join(f"{k} = {_toml_value(v)}\n" for k, v in config.items()),
            "utf-8",
        )
        ex = Exchange.open(settings, engine=engine, signing_key=key)
        system = Principal.system()
        outcome = ex.run(
            system,
            identity.register_participant,
            name=operator_name,
            kind="public_body" if operator_country == "CN" else "enterprise",
            country=operator_country,
            registry_id=operator_registry_id,
            roles=["operator", "auditor"],
            admin_name=admin_name,
            status=ParticipantStatus.VERIFIED,
            render=lambda v: {"value": v},
        )
        operator, admin = outcome.body["value"]
        token_outcome = ex.run(
            system,
            identity.issue_token,
            admin.id,
            description="created by datavalley init",
            render=lambda v: {"value": v},
        )
        ex.ledger.publish()
        return Initialised(settings, operator, admin, token_outcome.body["value"])
    finally:
        engine.dispose()


def open_exchange(home: Path | str | None = None, **overrides: Any) -> Exchange:
    """Open the exchange of an initialised home (migrating the schema forward if needed)."""
    settings = settings_for(home, **overrides)
    if not (settings.home / CONFIG_FILE).exists():
        raise InvalidInput(
            f"{settings.home} is not an exchange home (run `datavalley init --home {settings.home}`)",
            home=str(settings.home),
        )
    return Exchange.open(settings)
