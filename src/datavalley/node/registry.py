"""The node's own record of where each registered resource's data lives.

The exchange never learns paths or connection strings: it gets metadata, digests and aggregate
profiles. The node keeps ``resource_id -> location`` in ``NODE_HOME/resources.json`` (written atomically,
mode 0600, since connection URLs may hold credentials) for later computation on the data.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datavalley.errors import Conflict, InvalidInput, NotFound


@dataclass(frozen=True)
class Location:
    """Where a resource's data is: a file (with its format) or a table behind a database URL."""

    kind: str  # file | database
    location: str
    format: str
    table: str | None
    fingerprint: str
    #: Reader options pinned at registration (CSV encoding and dialect, XLSX sheet).
    options: Mapping[str, str] = field(default_factory=dict)


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
        data[resource_id] = {**asdict(location), "options": dict(location.options)}
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


class FingerprintCache:
    """The ``dvfp1`` fingerprint of a file as it is now, recomputed (one scan) whenever its size, mtime or
    inode change — so a node never computes on data that differs from what was registered."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int, int], str] = {}
        self._lock = threading.Lock()

    def current(self, path: str, fmt: str) -> str:
        """The fingerprint of ``path`` now (raises :class:`Conflict` if the node cannot read it)."""
        from datavalley.catalog.fingerprint import fingerprint
        from datavalley.catalog.sources import connect, open_source

        try:
            st = os.stat(path)
        except OSError as exc:
            raise Conflict(f"the node cannot read its copy of {path}: {exc.strerror}") from None
        key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            known = self._known.get(key)
        if known is None:
            try:
                with connect(open_source(path, format=fmt)) as conn:
                    known = fingerprint(conn).value
            except Exception as exc:  # any reader failure: the node cannot vouch for this data
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise Conflict(f"the node cannot read its copy of {path}: {first}") from None
            with self._lock:
                self._known[key] = known
        return known
