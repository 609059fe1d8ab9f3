"""Settings: read once, in one place, into one frozen object that is passed down.

Every setting is listed in :data:`SETTINGS_TABLE` (name, environment variable, default, meaning) and
docs/ARCHITECTURE.md lists the same table; a test keeps the two in step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SETTINGS_TABLE: tuple[tuple[str, str, str], ...] = (
    ("home", "DATAVALLEY_HOME", "the exchange home: config, SQLite database, keys (default ~/.datavalley)"),
    ("database_url", "DATAVALLEY_DATABASE_URL", "SQLAlchemy URL; default sqlite:///HOME/exchange.db"),
    ("origin", "DATAVALLEY_ORIGIN", "the ledger's checkpoint origin line (default datavalley.local/ledger)"),
    ("checkpoint_interval", "DATAVALLEY_CHECKPOINT_INTERVAL", "seconds between automatic checkpoints"),
    ("token_ttl_days", "DATAVALLEY_TOKEN_TTL_DAYS", "default lifetime of a new API token in days"),
    ("max_token_ttl_days", "DATAVALLEY_MAX_TOKEN_TTL_DAYS", "longest lifetime a token may be given"),
    ("sequence_batch", "DATAVALLEY_SEQUENCE_BATCH", "events sequenced onto the ledger per transaction"),
    (
        "market_fee_bps",
        "DATAVALLEY_MARKET_FEE_BPS",
        "exchange fee on every release to a provider, in basis points",
    ),
    ("node_engine", "DATAVALLEY_NODE_ENGINE", "private SQL engine of the node: duckdb or spark"),
)


class Settings(BaseSettings):
    """The exchange's configuration (environment variables ``DATAVALLEY_*`` override defaults)."""

    model_config = SettingsConfigDict(env_prefix="DATAVALLEY_", frozen=True, extra="ignore")

    home: Path = Field(default_factory=lambda: Path(os.path.expanduser("~/.datavalley")))
    database_url: str | None = None
    origin: str = "datavalley.local/ledger"
    checkpoint_interval: float = 10.0
    token_ttl_days: int = Field(default=90, ge=1)
    max_token_ttl_days: int = Field(default=366, ge=1)
    sequence_batch: int = Field(default=10_000, ge=1)
    market_fee_bps: int = Field(default=200, ge=0, le=5_000)
    node_engine: Literal["duckdb", "spark"] = "duckdb"

    @property
    def resolved_database_url(self) -> str:
        """The database URL in use: the explicit one, or the embedded SQLite file in the home."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'exchange.db'}"

    @property
    def exchange_key_path(self) -> Path:
        """Where ``datavalley init`` writes the exchange's Ed25519 signing key (mode 0600)."""
        return self.home / "keys" / "exchange.ed25519.pem"


def load_settings(home: Path | str | None = None, **overrides: object) -> Settings:
    """Read settings from the environment, with ``home`` and keyword overrides taking precedence."""
    values: dict[str, object] = {k: v for k, v in overrides.items() if v is not None}
    if home is not None:
        values["home"] = Path(home).expanduser()
    return Settings(**values)  # type: ignore[arg-type]
