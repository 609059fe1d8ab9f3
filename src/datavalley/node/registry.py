"""The node's own record of where each registered resource's data lives.

The exchange never learns paths or connection strings: it gets metadata, digests and aggregate
profiles. The node keeps ``resource_id -> location`` in ``NODE_HOME/resources.json`` (written atomically,
mode 0600, since connection URLs may hold credentials) for later computation on the data.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datavalley.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class Location:
    """Where a resource's data is: a file (with its format) or a table behind a database URL."""

    kind: str  # file | database
    location: str
    format: str
    table: str | None
    fingerprint: str


class NodeRegistry:
    """A small JSON-backed map from resource IDs to locations."""

    def __init__(self, home: Path) -> None:
        self.path = home / "node" / "resources.json"

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except ValueError as exc:
            raise InvalidInput(f"node registry {self.path} is corrupt: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput(f"node registry {self.path} is corrupt: not an object")
        return data

    def record(self, resource_id: str, location: Location) -> None:
        """Remember (or update) where ``resource_id`` lives."""
        data = self._load()
        data[resource_id] = asdict(location)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=2)
        os.replace(tmp, self.path)

    def get(self, resource_id: str) -> Location:
        """Where ``resource_id`` lives (raises :class:`NotFound` if this node does not hold it)."""
        raw = self._load().get(resource_id)
        if raw is None:
            raise NotFound(f"resource {resource_id} is not held by this node", resource_id=resource_id)
        return Location(**raw)
