"""Ready-made :class:`~datavalley.psi.model.PsiDataset` implementations: in memory, ID lines, CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from datavalley.errors import InvalidInput, NotFound
from datavalley.psi.normalise import IdKind

__all__ = ["CsvDataset", "LinesDataset", "MemoryDataset"]


def _missing(columns: tuple[str, ...], have: Sequence[str], where: str) -> None:
    absent = [c for c in columns if c not in have]
    if absent:
        raise InvalidInput(f"{where} has no column(s) {absent} (has: {list(have)})", field="columns")


class MemoryDataset:
    """IDs (and optional integer columns) held in memory."""

    def __init__(
        self,
        ids: Sequence[object],
        id_kind: IdKind = IdKind.TEXT,
        values: dict[str, Sequence[int | None]] | None = None,
    ) -> None:
        self._ids = list(ids)
        self._kind = id_kind
        self._values = {k: list(v) for k, v in (values or {}).items()}
        for name, column in self._values.items():
            if len(column) != len(self._ids):
                raise InvalidInput(
                    f"column {name!r} has {len(column)} values for {len(self._ids)} IDs", field=name
                )

    @property
    def id_kind(self) -> IdKind:
        return self._kind

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self._values)

    def records(self, columns: tuple[str, ...]) -> Iterator[tuple[object, tuple[int | None, ...]]]:
        _missing(columns, list(self._values), "memory dataset")
        cols = [self._values[c] for c in columns]
        for i, raw in enumerate(self._ids):
            yield raw, tuple(col[i] for col in cols)


class LinesDataset:
    """A UTF-8 text file with one ID per line (no columns); streamed, never loaded whole."""

    def __init__(self, path: Path, id_kind: IdKind = IdKind.TEXT) -> None:
        if not path.is_file():
            raise NotFound(f"ID file {path} does not exist", path=str(path))
        self.path = path
        self._kind = id_kind

    @property
    def id_kind(self) -> IdKind:
        return self._kind

    @property
    def columns(self) -> tuple[str, ...]:
        return ()

    def records(self, columns: tuple[str, ...]) -> Iterator[tuple[object, tuple[int | None, ...]]]:
        _missing(columns, [], f"ID file {self.path}")
        with self.path.open(encoding="utf-8", newline="\n") as fh:
            for line in fh:
                yield line.rstrip("\r\n"), ()


class CsvDataset:
    """A CSV file with a header: one ID column and integer value columns (empty cells are None)."""

    def __init__(self, path: Path, id_column: str, id_kind: IdKind = IdKind.TEXT) -> None:
        if not path.is_file():
            raise NotFound(f"CSV file {path} does not exist", path=str(path))
        self.path = path
        self.id_column = id_column
        self._kind = id_kind
        with path.open(encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh), [])
        if id_column not in header:
            raise InvalidInput(f"CSV file {path} has no ID column {id_column!r}", field="id_column")
        self._header = header

    @property
    def id_kind(self) -> IdKind:
        return self._kind

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in self._header if c != self.id_column)

    def records(self, columns: tuple[str, ...]) -> Iterator[tuple[object, tuple[int | None, ...]]]:
        _missing(columns, self._header, f"CSV file {self.path}")
        with self.path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for line, row in enumerate(reader, start=2):
                values: list[int | None] = []
                for c in columns:
                    cell = (row.get(c) or "").strip()
                    try:
                        values.append(int(cell) if cell else None)
                    except ValueError:
                        raise InvalidInput(
                            f"CSV file {self.path} line {line}: column {c!r} is not an integer: "
                            f"{cell[:20]!r}",
                            field=c,
                            line=line,
                        ) from None
                yield row.get(self.id_column), tuple(values)
