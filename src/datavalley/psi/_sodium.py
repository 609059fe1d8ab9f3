"""The few libsodium functions the PSI suites use, through cffi's ABI mode on the system libsodium.

pynacl 1.6 bundles libsodium but does not bind its ristretto255 functions (they are not exported from
its extension), so we load the system library (Debian ``libsodium23``, macOS ``brew install libsodium``)
lazily, on first use in each process. cffi releases the GIL around every call.
"""

from __future__ import annotations

import ctypes.util
import functools
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


@functools.cache
def sodium() -> Sodium:
    """The process's libsodium (loaded once). Raises :class:`Unavailable` if it is missing or too old."""
    ffi = FFI()
    ffi.cdef(_CDEF)
    name = ctypes.util.find_library("sodium") or "libsodium.so.23"
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
