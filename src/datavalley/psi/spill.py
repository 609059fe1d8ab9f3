"""Fixed-size records on disk, partitioned by their first key byte: bounded-memory sort and join.

A :class:`BucketSpill` takes batches of records (key first) and appends each to one of 64 bucket files
by the top bits of its first byte. Keys are pseudo-random (keyed hashes, tags), so buckets are even;
sorting one bucket at a time yields the whole spill in key order with ``1/64`` of it in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

__all__ = ["BUCKETS", "BucketSpill", "key_columns", "match_sorted"]

BUCKETS = 64
_SHIFT = 2  # 256 byte values -> 64 buckets

Records = npt.NDArray[np.uint8]


def as_records(data: bytes, size: int) -> Records:
    """View ``data`` as an ``(n, size)`` array of records."""
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, size)


def key_columns(records: Records, key_bytes: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """The first ``key_bytes`` (<= 16) of each record as two big-endian integers (hi, lo) for sorting."""
    n = records.shape[0]
    padded = np.zeros((n, 16), dtype=np.uint8)
    padded[:, :key_bytes] = records[:, :key_bytes]
    hi = padded[:, :8].copy().view(">u8").ravel().astype(np.uint64)
    lo = padded[:, 8:].copy().view(">u8").ravel().astype(np.uint64)
    return hi, lo


class BucketSpill:
    """Append-only bucketed record files under ``directory`` (thread-safe appends)."""

    def __init__(self, directory: Path, name: str, record_size: int, key_bytes: int) -> None:
        self.directory = directory
        self.name = name
        self.record_size = record_size
        self.key_bytes = key_bytes
        self.count = 0
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._files: list[BinaryIO] = []
        try:
            for b in range(BUCKETS):
                self._files.append((directory / f"{name}.{b:02d}").open("ab"))
        except BaseException:  # e.g. the session ended and its directory was removed meanwhile
            for fh in self._files:
                fh.close()
            raise

    def add(self, records: Records) -> None:
        """Append ``(n, record_size)`` records."""
        if records.shape[0] == 0:
            return
        if records.shape[1] != self.record_size:
            raise ValueError(f"record size {records.shape[1]} != {self.record_size}")
        bucket = records[:, 0] >> _SHIFT
        order = np.argsort(bucket, kind="stable")
        sorted_records = records[order]
        bounds = np.searchsorted(bucket[order], np.arange(BUCKETS + 1))
        with self._lock:
            for b in range(BUCKETS):
                lo, hi = int(bounds[b]), int(bounds[b + 1])
                if hi > lo:
                    self._files[b].write(sorted_records[lo:hi].tobytes())
            self.count += records.shape[0]

    def close(self) -> None:
        with self._lock:
            for fh in self._files:
                fh.close()

    def bucket(self, b: int, *, sort: bool = True) -> Records:
        """All records of bucket ``b`` (sorted by key, stable, when ``sort``). Call after :meth:`close`."""
        data = (self.directory / f"{self.name}.{b:02d}").read_bytes()
        records = as_records(data, self.record_size)
        if not sort or records.shape[0] < 2:
            return records
        hi, lo = key_columns(records, self.key_bytes)
        return records[np.lexsort((lo, hi))]

    def buckets(self, *, sort: bool = True) -> Iterator[Records]:
        """Every bucket in key order: the whole spill sorted when ``sort``."""
        for b in range(BUCKETS):
            yield self.bucket(b, sort=sort)

    def remove(self) -> None:
        self.close()
        for b in range(BUCKETS):
            (self.directory / f"{self.name}.{b:02d}").unlink(missing_ok=True)


def match_sorted(
    own: Records, peer: Records, key_bytes: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Indices ``(i, j)`` with ``own[i]`` and ``peer[j]`` having equal keys (each side's keys distinct)."""
    m, n = own.shape[0], peer.shape[0]
    if m == 0 or n == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    ho, lo_o = key_columns(own, key_bytes)
    hp, lo_p = key_columns(peer, key_bytes)
    hi = np.concatenate([ho, hp])
    lo = np.concatenate([lo_o, lo_p])
    src = np.concatenate([np.zeros(m, dtype=np.uint8), np.ones(n, dtype=np.uint8)])
    idx = np.concatenate([np.arange(m, dtype=np.intp), np.arange(n, dtype=np.intp)])
    order = np.lexsort((src, lo, hi))
    h, low, s, i = hi[order], lo[order], src[order], idx[order]
    eq = (h[1:] == h[:-1]) & (low[1:] == low[:-1]) & (s[:-1] == 0) & (s[1:] == 1)
    return i[:-1][eq], i[1:][eq]
