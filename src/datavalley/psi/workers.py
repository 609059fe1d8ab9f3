"""The process pool that runs a node's PSI curve work, and the batch tasks it runs.

One worker per core. libsodium through cffi does release the GIL, but every element also costs Python
work that holds it (hashing, the curve-membership test, slicing); ``bench/psi.py --threads`` measures
threads against processes. Tasks take and return bytes (one pickle per batch), and report an invalid
received element as :class:`~datavalley.psi.suites.InvalidElement` (it pickles with its index).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from datavalley.psi import elgamal
from datavalley.psi.normalise import IdKind, normalise_many
from datavalley.psi.suites import Suite, hash_to_group, multiply, multiply_to_tags

__all__ = ["Workers", "prepared_record_size"]

T = TypeVar("T")

KEY_BYTES = 16


def prepared_record_size(columns: int) -> int:
    """Spill record of the preparation: sort key (16) ‖ H(id) (32) ‖ row (8) ‖ values (8 each)."""
    return KEY_BYTES + 32 + 8 + 8 * columns


def task_prepare(
    kind: IdKind,
    suite: Suite,
    sort_key: bytes,
    first_row: int,
    raws: list[object],
    values: list[tuple[int | None, ...]],
    bounds: list[tuple[int, int]],
) -> tuple[bytes, dict[str, int]]:
    """Normalise, hash to the group and key a batch of input rows (rows numbered from ``first_row``)."""
    valid, invalid = normalise_many(kind, raws)
    if not valid:
        return b"", dict(invalid)
    points = hash_to_group(suite, [v.encode("utf-8") for _, v in valid])
    n = len(valid)
    size = prepared_record_size(len(bounds))
    records = np.zeros((n, size), dtype=np.uint8)
    pts = np.frombuffer(points, dtype=np.uint8).reshape(n, 32)
    blake = hashlib.blake2b
    keys = b"".join(
        blake(points[32 * i : 32 * (i + 1)], digest_size=KEY_BYTES, key=sort_key).digest() for i in range(n)
    )
    records[:, :KEY_BYTES] = np.frombuffer(keys, dtype=np.uint8).reshape(n, KEY_BYTES)
    records[:, KEY_BYTES : KEY_BYTES + 32] = pts
    rows = np.array([first_row + i for i, _ in valid], dtype="<u8")
    records[:, KEY_BYTES + 32 : KEY_BYTES + 40] = rows.view(np.uint8).reshape(n, 8)
    if bounds:
        vals = np.array(
            [
                [
                    min(max(0 if v is None else int(v), lo), hi)
                    for v, (lo, hi) in zip(values[i], bounds, strict=True)
                ]
                for i, _ in valid
            ],
            dtype="<i8",
        )
        records[:, KEY_BYTES + 40 :] = vals.view(np.uint8).reshape(n, 8 * len(bounds))
    return records.tobytes(), dict(invalid)


def task_blind(suite: Suite, secret: bytes, points: bytes) -> bytes:
    """Blind own hashed elements: ``[secret]H``."""
    return multiply(suite, secret, points, validate=False)


def task_blind_encrypt(
    suite: Suite, secret: bytes, points: bytes, xs: list[int], plaintexts: list[tuple[int, ...]]
) -> bytes:
    """Blind own elements and attach each row's ElGamal ciphertext (aggregate-mode provider records)."""
    blinded = multiply(suite, secret, points, validate=False)
    cts = elgamal.encrypt_rows(xs, plaintexts)
    size = elgamal.ciphertext_bytes(len(xs))
    return b"".join(
        blinded[32 * i : 32 * (i + 1)] + cts[size * i : size * (i + 1)] for i in range(len(plaintexts))
    )


def task_tags(suite: Suite, secret: bytes, points: bytes) -> bytes:
    """Double-blind the peer's (validated) elements and return their tags."""
    return multiply_to_tags(suite, secret, points, validate=True)


def task_sum(blob: bytes, columns: int) -> bytes:
    return elgamal.sum_ciphertexts(blob, columns)


class Workers:
    """A lazily started pool of ``processes`` workers (``threads=True``: a thread pool, for measuring)."""

    def __init__(self, processes: int | None = None, *, threads: bool = False) -> None:
        self.processes = processes or os.cpu_count() or 1
        self.threads = threads
        self._executor: Executor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> Executor:
        with self._lock:
            if self._executor is None:
                if self.threads:
                    self._executor = ThreadPoolExecutor(self.processes, thread_name_prefix="psi-worker")
                else:
                    # spawn: the pool may be started from a server with threads running (fork is unsafe).
                    ctx = multiprocessing.get_context("spawn")
                    self._executor = ProcessPoolExecutor(self.processes, mp_context=ctx)
            return self._executor

    def start(self) -> None:
        """Start every worker now (a spawned worker takes a fraction of a second to import)."""
        for f in [self._pool().submit(os.getpid) for _ in range(self.processes)]:
            f.result()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._pool().submit(fn, *args)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(fn, *args).result()

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None
