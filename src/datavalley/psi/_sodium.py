"""The few libsodium functions the PSI suites use, through cffi's ABI mode.

libsodium comes from a wheel, not from the system: pynacl bundles libsodium but does not export its
ristretto255 functions, so we use the complete libsodium 1.0.18 shared library that the ``rbcl`` wheel
(MIT) ships as a hex literal in ``rbcl/_sodium.py``. We decode it once into a content-addressed cache file
(``$XDG_CACHE_HOME/datavalley/libsodium-<sha256>.so``, mode 0600, written atomically) and ``dlopen`` that
— rbcl's own import would write a fresh temporary copy in every process. Without rbcl we fall back to the
system library (Debian ``libsodium23``). Loaded lazily, on first use in each process; cffi releases the
GIL around every call.
"""

from __future__ import annotations

import ctypes.util
import functools
import hashlib
import importlib.util
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from cffi import FFI  # type: ignore[import-untyped]

from datavalley.errors import Unavailable

_CDEF = """
int sodium_init(void);
const char *sodium_version_string(void);
int sodium_library_version_major(void);
int sodium_library_version_minor(void);
void randombytes_buf(void * const buf, const size_t size);
int crypto_scalarmult_curve25519(unsigned char *q, const unsigned char *n, const unsigned char *p);
int crypto_core_ristretto255_from_hash(unsigned char *p, const unsigned char *r);
int crypto_core_ristretto255_is_valid_point(const unsigned char *p);
int crypto_core_ristretto255_add(unsigned char *r, const unsigned char *p, const unsigned char *q);
int crypto_core_ristretto255_sub(unsigned char *r, const unsigned char *p, const unsigned char *q);
void crypto_core_ristretto255_scalar_random(unsigned char *r);
void crypto_core_ristretto255_scalar_reduce(unsigned char *r, const unsigned char *s);
int crypto_scalarmult_ristretto255(unsigned char *q, const unsigned char *n, const unsigned char *p);
int crypto_scalarmult_ristretto255_base(unsigned char *q, const unsigned char *n);
"""

#: ristretto255 needs libsodium 1.0.18 (library version 10.3).
_MIN_LIBRARY_VERSION = (10, 3)


class Sodium:
    """A loaded libsodium: ``ffi`` for buffers, ``lib`` for the functions declared above."""

    def __init__(self, ffi: Any, lib: Any) -> None:
        self.ffi = ffi
        self.lib = lib

    @property
    def version(self) -> str:
        return str(self.ffi.string(self.lib.sodium_version_string()).decode("ascii"))


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "datavalley"


def bundled_library() -> str | None:
    """Path of the libsodium shared library bundled in the ``rbcl`` wheel (extracted once), or None."""
    try:
        return _extract(_cache_dir())
    except OSError:  # an unwritable cache directory: a private directory under the system temp dir
        return _extract(Path(tempfile.gettempdir()) / f"datavalley-{os.getuid()}")


def _extract(cache: Path) -> str | None:
    spec = importlib.util.find_spec("rbcl._sodium") if importlib.util.find_spec("rbcl") else None
    if spec is None or spec.origin is None:
        return None
    source = Path(spec.origin)
    stat = source.stat()
    marker = f"{source}:{stat.st_size}:{stat.st_mtime_ns}"
    index = cache / f"libsodium-{hashlib.sha256(marker.encode()).hexdigest()[:16]}.path"
    if index.exists():
        known = Path(index.read_text("utf-8").strip())
        if known.exists():
            return str(known)
    found = re.search(r"bytes\.fromhex\('([0-9a-f]+)'\)", source.read_text("ascii"))
    if found is None:
        return None
    blob = bytes.fromhex(found.group(1))
    target = cache / f"libsodium-{hashlib.sha256(blob).hexdigest()[:32]}.so"
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not target.exists():
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(str(target))
    os.replace(tmp, index)
    return str(target)


@functools.cache
def sodium() -> Sodium:
    """The process's libsodium (loaded once). Raises :class:`Unavailable` if it is missing or too old."""
    ffi = FFI()
    ffi.cdef(_CDEF)
    name = bundled_library() or ctypes.util.find_library("sodium") or "libsodium.so.23"
    try:
        lib = ffi.dlopen(name)
    except OSError as exc:
        raise Unavailable(
            f"libsodium >= 1.0.18 is needed for PSI but {name!r} cannot be loaded: {exc} "
            "(install Debian's libsodium23 or your platform's libsodium)",
            library=name,
        ) from exc
    if lib.sodium_init() < 0:
        raise Unavailable("libsodium failed to initialise (sodium_init() < 0)", library=name)
    version = (lib.sodium_library_version_major(), lib.sodium_library_version_minor())
    if version < _MIN_LIBRARY_VERSION:
        found = ffi.string(lib.sodium_version_string()).decode("ascii")
        raise Unavailable(
            f"libsodium {found} has no ristretto255; PSI needs libsodium >= 1.0.18", library=name
        )
    return Sodium(ffi, lib)
