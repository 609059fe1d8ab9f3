"""Turn a node's input into its PSI set on disk: normalised, hashed, de-duplicated, in random order.

Pass 1 streams the input in chunks through the worker pool (normalise, hash to the group, key each
element with a fresh local BLAKE2b key) into a :class:`~datavalley.psi.spill.BucketSpill`. Pass 2 reads
one bucket at a time, sorts it by key, drops duplicates (equal ``H(id)``), and appends the survivors to
``prepared.bin``. Keyed-hash order is a uniformly random permutation, independent of the input order,
and it is the order the peer sees (docs/PSI.md section 3).
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import numpy.typing as npt

from datavalley.errors import InvalidInput
from datavalley.psi.model import Bounds, PsiDataset
from datavalley.psi.normalise import IdKind, InvalidId, NormalisationReport, normalise
from datavalley.psi.spill import BucketSpill
from datavalley.psi.suites import Suite
from datavalley.psi.workers import KEY_BYTES, Workers, prepared_record_size, task_prepare

__all__ = ["MAX_SET_SIZE", "OwnSet", "matched_ids", "prepare"]

#: Largest set a side may bring (tags are 96 bits: false-match probability below 2^-40).
MAX_SET_SIZE = 2**28
CHUNK = 8192


@dataclass(frozen=True)
class OwnSet:
    """A prepared set: ``size`` records ``H(id) ‖ row ‖ values`` in ``path``, in the order sent."""

    path: Path
    size: int
    columns: tuple[str, ...]
    bounds: tuple[Bounds, ...]
    report: NormalisationReport

    @property
    def record_size(self) -> int:
        return 32 + 8 + 8 * len(self.columns)

    def batches(self, batch_size: int) -> int:
        return (self.size + batch_size - 1) // batch_size

    def batch(self, k: int, batch_size: int) -> npt.NDArray[np.uint8]:
        """Records of batch ``k`` as an ``(n, record_size)`` array."""
        start = k * batch_size
        count = max(0, min(batch_size, self.size - start))
        with self.path.open("rb") as fh:
            fh.seek(start * self.record_size)
            data = fh.read(count * self.record_size)
        return np.frombuffer(data, dtype=np.uint8).reshape(count, self.record_size)

    @staticmethod
    def points(records: npt.NDArray[np.uint8]) -> bytes:
        return records[:, :32].tobytes()

    @staticmethod
    def rows(records: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
        return records[:, 32:40].copy().view("<u8").ravel()

    def values(self, records: npt.NDArray[np.uint8]) -> list[tuple[int, ...]]:
        """Clamped values shifted by each column's lower bound (the ElGamal plaintexts, all >= 0)."""
        if not self.columns:
            return [()] * records.shape[0]
        raw = records[:, 40:].copy().view("<i8").reshape(records.shape[0], len(self.columns))
        lowers = np.array([b.lower for b in self.bounds], dtype=np.int64)
        return [tuple(int(v) for v in row) for row in (raw - lowers)]


def _chunks(
    dataset: PsiDataset, columns: tuple[str, ...]
) -> Iterator[tuple[int, list[object], list[tuple[int | None, ...]]]]:
    records = dataset.records(columns)
    first = 0
    while True:
        chunk = list(islice(records, CHUNK))
        if not chunk:
            return
        yield first, [r for r, _ in chunk], [v for _, v in chunk]
        first += len(chunk)


def prepare(
    dataset: PsiDataset,
    *,
    suite: Suite,
    workers: Workers,
    directory: Path,
    columns: tuple[str, ...] = (),
    bounds: tuple[Bounds, ...] = (),
    max_size: int = MAX_SET_SIZE,
) -> OwnSet:
    """Prepare ``dataset`` in ``directory``. Raises :class:`InvalidInput` if the set is too large."""
    directory.mkdir(parents=True, exist_ok=True)
    sort_key = os.urandom(32)
    size = prepared_record_size(len(columns))
    spill = BucketSpill(directory, "raw", size, KEY_BYTES)
    invalid: Counter[str] = Counter()
    records = 0
    pending: deque[Future[tuple[bytes, dict[str, int]]]] = deque()
    limits = [(b.lower, b.upper) for b in bounds]

    def drain(keep: int) -> None:
        while len(pending) > keep:
            data, bad = pending.popleft().result()
            invalid.update(bad)
            spill.add(np.frombuffer(data, dtype=np.uint8).reshape(-1, size))

    try:
        for first, raws, values in _chunks(dataset, columns):
            records += len(raws)
            pending.append(
                workers.submit(task_prepare, dataset.id_kind, suite, sort_key, first, raws, values, limits)
            )
            drain(2 * workers.processes)
        drain(0)
    finally:
        for f in pending:
            f.cancel()
        spill.close()
    valid = records - sum(invalid.values())
    if valid > max_size:
        spill.remove()
        raise InvalidInput(f"set of {valid} valid IDs exceeds the limit of {max_size}", field="set_size")
    out_path = directory / "prepared.bin"
    duplicates = 0
    kept = 0
    with out_path.open("wb") as out:
        for bucket in spill.buckets():
            if bucket.shape[0] == 0:
                continue
            keys = bucket[:, : KEY_BYTES + 32]
            dup = np.zeros(bucket.shape[0], dtype=bool)
            dup[1:] = np.all(keys[1:] == keys[:-1], axis=1)
            duplicates += int(dup.sum())
            keep = bucket[~dup, KEY_BYTES:]
            kept += keep.shape[0]
            out.write(keep.tobytes())
    spill.remove()
    report = NormalisationReport(records=records, invalid=dict(invalid), duplicates=duplicates)
    return OwnSet(out_path, kept, columns, bounds, report)


def matched_ids(dataset: PsiDataset, kind: IdKind, rows: npt.NDArray[np.uint64], out: Path) -> int:
    """Write ``<row>\\t<normalised ID>`` for each of the (sorted) ``rows`` of ``dataset`` to ``out``."""
    wanted = iter(int(r) for r in rows)
    target = next(wanted, None)
    written = 0
    with out.open("w", encoding="utf-8") as fh:
        for i, (raw, _) in enumerate(dataset.records(())):
            if target is None:
                break
            if i < target:
                continue
            try:
                fh.write(f"{i}\t{normalise(kind, raw)}\n")
            except InvalidId:  # cannot happen: the row was valid when prepared
                raise InvalidInput(f"row {i} changed while the session ran", row=i) from None
            written += 1
            target = next(wanted, None)
    return written
