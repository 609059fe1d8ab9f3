"""C2SP signed notes, transparency-log checkpoints and Ed25519 cosignatures.

Implements, with Ed25519 only:

* signed notes, https://c2sp.org/signed-note (wire-compatible with golang.org/x/mod/sumdb/note): a text
  ending in a newline, a blank line, then lines ``— <key name> base64(key ID || signature)``; key IDs are
  ``SHA-256(name || "\\n" || 0x01 || public key)[:4]`` and verifier keys are encoded as
  ``<name>+<hex key ID>+base64(0x01 || public key)``;
* checkpoints, https://c2sp.org/tlog-checkpoint: a note whose text is ``origin``, tree ``size``, base64
  RFC 9162 ``root hash`` and optional extension lines;
* Ed25519 cosignatures, https://c2sp.org/tlog-cosignature (``cosignature/v1``, signature type 0x04): a
  witness signs ``cosignature/v1\\ntime <t>\\n`` + checkpoint body, and the signature line carries
  ``key ID || uint64 big-endian timestamp || Ed25519 signature``.

Parsing is strict where the formats leave room for ambiguity: base64 must be canonical (so a signature has
one spelling and any change to a note is detected), sizes have no leading zeros, hashes are 32 bytes.
Everything malformed raises ``NoteError`` with a message saying what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "CosignatureSigner",
    "CosignatureVerifier",
    "NoteError",
    "NoteSignature",
    "Signer",
    "Verifier",
    "append_signature_lines",
    "cosign",
    "cosignature_message",
    "note_cosignatures",
    "open_checkpoint",
    "open_note",
    "parse_cosignature_signer_key",
    "parse_cosignature_verifier_key",
    "parse_note",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "verify_cosignature",
]

ALG_ED25519: Final = 0x01
"""Signature type byte of plain Ed25519 note signatures (c2sp.org/signed-note)."""
ALG_COSIGNATURE_V1: Final = 0x04
"""Signature type byte of timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature)."""
MAX_SIGNATURES: Final = 100
"""Most signature lines a note may carry; the spec requires accepting at least 16, Go allows 100."""

_SIG_PREFIX: Final = "\u2014 "  # em dash, space
_KEY_ID_SIZE: Final = 4
_ED25519_SIG_SIZE: Final = 64
_ED25519_KEY_SIZE: Final = 32
_HASH_SIZE: Final = 32
_MAX_UINT64: Final = 2**64 - 1
_MAX_TIMESTAMP: Final = 2**63 - 1
_COSIGNATURE_HEADER: Final = "cosignature/v1\n"
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")


class NoteError(ValueError):
    """A note, key, checkpoint or cosignature is malformed or does not verify."""


# ---------------------------------------------------------------------------------------------------------
# Encoding helpers
# ---------------------------------------------------------------------------------------------------------


def _b64decode(text: str, what: str) -> bytes:
    """Decode standard base64, accepting only the canonical spelling."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"{what} is not valid base64: {exc}") from None
    # b64decode ignores the unused low bits of the last character; re-encoding catches those variants, so
    # every signature and hash has exactly one accepted spelling.
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _check_name(name: object, what: str = "key name") -> str:
    """Return ``name`` if it is a valid note key name (non-empty, no Unicode spaces, no '+')."""
    if not isinstance(name, str) or not name:
        raise NoteError(f"{what} must be a non-empty string, got {name!r}")
    if "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"{what} {name!r} must not contain spaces or '+'")
    _check_text_chars(name, what)
    return name


def _check_text_chars(text: str, what: str) -> bytes:
    """Return ``text`` as UTF-8 after checking it has no ASCII control characters other than newline."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError(f"{what} is not valid UTF-8: {exc.reason} at offset {exc.start}") from None
    for i, ch in enumerate(text):
        if ch < " " and ch != "\n":
            raise NoteError(f"{what} contains control character U+{ord(ch):04X} at offset {i}")
    return raw


def _key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """Key ID per c2sp.org/signed-note: SHA-256(name || 0x0A || type || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:_KEY_ID_SIZE]


def _load_public_key(public_key: bytes) -> Ed25519PublicKey:
    if not isinstance(public_key, bytes) or len(public_key) != _ED25519_KEY_SIZE:
        raise NoteError("an Ed25519 public key must be 32 bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError as exc:
        raise NoteError(f"invalid Ed25519 public key: {exc}") from None


# ---------------------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ed25519Verifier:
    """An Ed25519 public key under a name, for one signature type (``alg``)."""

    alg: ClassVar[int]
    name: str
    public_key: bytes
    key_id: bytes = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "_key", _load_public_key(self.public_key))
        object.__setattr__(self, "key_id", _key_id(self.name, self.alg, self.public_key))

    def verifier_key_string(self) -> str:
        """Return the vkey encoding ``<name>+<hex key ID>+base64(type || public key)``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64encode(bytes([self.alg]) + self.public_key)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is this key's Ed25519 signature of ``message`` (never raises)."""
        if not isinstance(signature, bytes) or len(signature) != _ED25519_SIG_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Verifier(_Ed25519Verifier):
    """A note verifier: key name plus 32-byte Ed25519 public key; ``key_id`` is derived with type 0x01.

    Constructing one raises NoteError if the name is invalid or the key is not a 32-byte Ed25519 key.
    """

    alg: ClassVar[int] = ALG_ED25519


class CosignatureVerifier(_Ed25519Verifier):
    """A witness (cosigner) key: name plus 32-byte Ed25519 public key; ``key_id`` is derived with type 0x04.

    A separate type from Verifier because a cosignature signs a different message than the note text.
    Constructing one raises NoteError if the name is invalid or the key is not a 32-byte Ed25519 key.
    """

    alg: ClassVar[int] = ALG_COSIGNATURE_V1


@dataclass(frozen=True)
class _Ed25519Signer:
    """An Ed25519 private key under a name, for one signature type (``alg``)."""

    alg: ClassVar[int]
    name: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)
    public_key: bytes = field(init=False)
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise NoteError("a signer needs an Ed25519PrivateKey")
        public_key = self.private_key.public_key().public_bytes_raw()
        object.__setattr__(self, "public_key", public_key)
        object.__setattr__(self, "key_id", _key_id(self.name, self.alg, public_key))

    def signer_key_string(self) -> str:
        """Return the secret skey encoding ``PRIVATE+KEY+<name>+<hex key ID>+base64(type || seed)``.

        This is the format of golang.org/x/mod/sumdb/note; whoever holds it can sign, so keep it secret.
        """
        seed = self.private_key.private_bytes_raw()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{_b64encode(bytes([self.alg]) + seed)}"

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message`` (deterministic, RFC 8032)."""
        return self.private_key.sign(message)


class Signer(_Ed25519Signer):
    """A note signer (signature type 0x01): key name plus Ed25519 private key.

    Constructing one raises NoteError if the name is invalid or the key is not an Ed25519 private key.
    """

    alg: ClassVar[int] = ALG_ED25519

    @classmethod
    def generate(cls, name: str) -> Signer:
        """Return a signer with a fresh random key. Raises NoteError if ``name`` is invalid."""
        return cls(name, Ed25519PrivateKey.generate())

    def verifier(self) -> Verifier:
        """Return the matching Verifier."""
        return Verifier(self.name, self.public_key)


class CosignatureSigner(_Ed25519Signer):
    """A witness signing key for cosignature/v1 (signature type 0x04): name plus Ed25519 private key.

    Constructing one raises NoteError if the name is invalid or the key is not an Ed25519 private key.
    """

    alg: ClassVar[int] = ALG_COSIGNATURE_V1

    @classmethod
    def generate(cls, name: str) -> CosignatureSigner:
        """Return a cosigner with a fresh random key. Raises NoteError if ``name`` is invalid."""
        return cls(name, Ed25519PrivateKey.generate())

    def verifier(self) -> CosignatureVerifier:
        """Return the matching CosignatureVerifier."""
        return CosignatureVerifier(self.name, self.public_key)


def _parse_vkey(vkey: str, alg: int) -> tuple[str, bytes]:
    """Split and check a vkey of signature type ``alg``; return (name, public key)."""
    if not isinstance(vkey, str):
        raise NoteError(f"a verifier key must be a string, got {type(vkey).__name__}")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key must look like <name>+<8 hex digit key ID>+<base64 key>")
    name, id_hex, key64 = parts
    _check_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise NoteError(f"verifier key ID {id_hex!r} is not 8 hex digits")
    key = _b64decode(key64, "verifier key material")
    if not key:
        raise NoteError("verifier key material is empty")
    if key[0] != alg:
        hint = ""
        if key[0] == ALG_COSIGNATURE_V1:
            hint = "; it is a cosignature/v1 witness key, use parse_cosignature_verifier_key"
        elif key[0] == ALG_ED25519:
            hint = "; it is a note signing key, use parse_verifier_key"
        raise NoteError(f"verifier key has signature type 0x{key[0]:02x}, expected 0x{alg:02x}{hint}")
    if len(key) != 1 + _ED25519_KEY_SIZE:
        raise NoteError(f"an Ed25519 verifier key must hold 32 key bytes, got {len(key) - 1}")
    if _key_id(name, alg, key[1:]) != bytes.fromhex(id_hex):
        raise NoteError(f"verifier key ID {id_hex} does not match the name and public key")
    return name, key[1:]


def parse_verifier_key(vkey: str) -> Verifier:
    """Parse a note verifier key ``<name>+<hex key ID>+base64(0x01 || Ed25519 public key)``.

    Raises:
        NoteError: if the string is malformed, not an Ed25519 (0x01) key, or its key ID does not match.
    """
    name, public_key = _parse_vkey(vkey, ALG_ED25519)
    return Verifier(name, public_key)


def parse_cosignature_verifier_key(vkey: str) -> CosignatureVerifier:
    """Parse a witness verifier key ``<name>+<hex key ID>+base64(0x04 || Ed25519 public key)``.

    Raises:
        NoteError: if the string is malformed, not a cosignature/v1 (0x04) key, or its key ID does not match.
    """
    name, public_key = _parse_vkey(vkey, ALG_COSIGNATURE_V1)
    return CosignatureVerifier(name, public_key)


def _parse_skey(skey: str, alg: int) -> tuple[str, Ed25519PrivateKey]:
    """Split and check an skey of signature type ``alg``; return (name, private key)."""
    if not isinstance(skey, str):
        raise NoteError(f"a signer key must be a string, got {type(skey).__name__}")
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise NoteError("a signer key must look like PRIVATE+KEY+<name>+<8 hex digit key ID>+<base64 key>")
    _, _, name, id_hex, key64 = parts
    _check_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise NoteError(f"signer key ID {id_hex!r} is not 8 hex digits")
    key = _b64decode(key64, "signer key material")
    if len(key) != 1 + _ED25519_KEY_SIZE or key[0] != alg:
        raise NoteError(f"signer key material must be 0x{alg:02x} followed by a 32-byte Ed25519 seed")
    private_key = Ed25519PrivateKey.from_private_bytes(key[1:])
    # The key ID hashes the public key, which only exists once the seed has been expanded.
    if _key_id(name, alg, private_key.public_key().public_bytes_raw()) != bytes.fromhex(id_hex):
        raise NoteError(f"signer key ID {id_hex} does not match the name and key")
    return name, private_key


def parse_signer_key(skey: str) -> Signer:
    """Parse a secret signer key ``PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || 32-byte seed)``.

    Raises:
        NoteError: if the string is malformed, not an Ed25519 (0x01) key, or its key ID does not match.
    """
    name, private_key = _parse_skey(skey, ALG_ED25519)
    return Signer(name, private_key)


def parse_cosignature_signer_key(skey: str) -> CosignatureSigner:
    """Parse a secret witness key ``PRIVATE+KEY+<name>+<hex key ID>+base64(0x04 || 32-byte seed)``.

    Raises:
        NoteError: if the string is malformed, not a cosignature/v1 (0x04) key, or its key ID does not match.
    """
    name, private_key = _parse_skey(skey, ALG_COSIGNATURE_V1)
    return CosignatureSigner(name, private_key)


# ---------------------------------------------------------------------------------------------------------
# Signed notes
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note, not yet verified: key name, 4-byte key ID and signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """Return the signature line ``— <name> base64(key ID || signature)`` with its newline."""
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id + self.signature)}\n"


def _parse_signature_line(line: str, where: str) -> NoteSignature:
    """Parse one signature line (without its newline)."""
    if not line.startswith(_SIG_PREFIX):
        raise NoteError(f"{where} does not start with an em dash and a space")
    name, space, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not space or not b64:
        raise NoteError(f"{where} has no signature after the key name")
    _check_name(name, f"key name in {where}")
    raw = _b64decode(b64, f"signature in {where}")
    if len(raw) <= _KEY_ID_SIZE:
        raise NoteError(f"signature in {where} is {len(raw)} bytes; it needs a 4-byte key ID and a signature")
    return NoteSignature(name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:])


def _decode_note(note: str | bytes) -> str:
    """Return the note as text after the whole-note checks: valid UTF-8, no control characters."""
    if isinstance(note, bytes):
        try:
            text = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"note is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    elif isinstance(note, str):
        text = note
    else:
        raise NoteError(f"a note must be str or bytes, got {type(note).__name__}")
    _check_text_chars(text, "note")
    return text


def parse_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and signature lines, checking the format but no signatures.

    The text includes its final newline; it is separated from the signatures by the last blank line.

    Raises:
        NoteError: if the note is not UTF-8, contains control characters, lacks the blank line or any
            signature, has more than MAX_SIGNATURES signatures, or has a malformed signature line.
    """
    decoded = _decode_note(note)
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line separating the text from the signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block:
        raise NoteError("note has no signature lines after the blank line")
    if not block.endswith("\n"):
        raise NoteError("note must end with a newline after its last signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signatures, more than the limit of {MAX_SIGNATURES}")
    return text, [_parse_signature_line(line, f"signature line {i + 1}") for i, line in enumerate(lines)]


def _check_note_text(text: str) -> bytes:
    """Return the UTF-8 of a note text after checking it can be signed."""
    if not isinstance(text, str):
        raise NoteError(f"note text must be a string, got {type(text).__name__}")
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    return _check_text_chars(text, "note text")


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign ``text`` with each signer and return the signed note.

    Raises:
        NoteError: if the text does not end with a newline, contains control characters or invalid
            UTF-8, no signer is given, or two signers share a name and key ID.
        TypeError: if a signer is not a Signer.
    """
    message = _check_note_text(text)
    if not signers:
        raise NoteError("a note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise NoteError(f"a note may carry at most {MAX_SIGNATURES} signatures")
    seen: set[tuple[str, bytes]] = set()
    lines: list[str] = []
    for signer in signers:
        if not isinstance(signer, Signer):
            raise TypeError(f"sign_note needs Signer objects, got {type(signer).__name__}")
        if (signer.name, signer.key_id) in seen:
            raise NoteError(f"duplicate signer {signer.name}+{signer.key_id.hex()}")
        seen.add((signer.name, signer.key_id))
        lines.append(NoteSignature(signer.name, signer.key_id, signer.sign(message)).line())
    return text + "\n" + "".join(lines)


_V = TypeVar("_V", Verifier, CosignatureVerifier)


def _index_verifiers(verifiers: Iterable[_V], kind: type[_V]) -> dict[tuple[str, bytes], _V]:
    """Map (name, key ID) to verifier, refusing other types and two different keys under one name and ID."""
    known: dict[tuple[str, bytes], _V] = {}
    for verifier in verifiers:
        if not isinstance(verifier, kind):
            raise TypeError(f"expected {kind.__name__} objects, got {type(verifier).__name__}")
        slot = (verifier.name, verifier.key_id)
        if known.setdefault(slot, verifier) != verifier:
            raise NoteError(f"ambiguous keys: two different keys for {verifier.name}+{verifier.key_id.hex()}")
    return known


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> tuple[str, list[str]]:
    """Verify a signed note; return its text and the names of the known keys that signed it.

    A signature line belongs to a verifier when both its name and key ID match. Lines from unknown keys
    (including witness cosignatures, whose type-0x04 key IDs never match a Verifier) are ignored, as the
    spec requires; every line from a known key must verify. Names are returned once each, in order.

    Raises:
        NoteError: if the note is malformed (see ``parse_note``), a known key's signature is invalid, two
            different verifiers share a name and key ID, or no known key signed the note.
        TypeError: if a verifier is not a Verifier (witness cosignatures: ``note_cosignatures``).
    """
    text, signatures = parse_note(note)
    known = _index_verifiers(verifiers, Verifier)
    message = text.encode("utf-8")
    names: list[str] = []
    for sig in signatures:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        if not key.verify(message, sig.signature):
            raise NoteError(f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        if sig.name not in names:
            names.append(sig.name)
    if not names:
        signed_by = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signatures)
        raise NoteError(f"note has no signature from a known key (signed by: {signed_by})")
    return text, names


def append_signature_lines(note: str, lines: Sequence[str]) -> str:
    """Append signature lines (e.g. cosignatures) to a signed note and return the new note.

    Lines may carry their final newline or not. Lines already present in the note are not repeated.

    Raises:
        NoteError: if the note or a line is malformed, or the result has too many signatures.
    """
    text, existing = parse_note(note)
    present = {sig.line() for sig in existing}
    out = [sig.line() for sig in existing]
    for i, line in enumerate(lines):
        sig = _parse_signature_line(line.removesuffix("\n"), f"appended line {i + 1}")
        if sig.line() not in present:
            present.add(sig.line())
            out.append(sig.line())
    if len(out) > MAX_SIGNATURES:
        raise NoteError(f"note would carry {len(out)} signatures, more than the limit of {MAX_SIGNATURES}")
    return text + "\n" + "".join(out)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A transparency-log checkpoint body (c2sp.org/tlog-checkpoint).

    Constructing one raises NoteError if the origin is empty or contains a newline or control character,
    the size is not an int in uint64 range, the root hash is not 32 bytes, or an extension line is empty
    or contains a newline or control character.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise NoteError("checkpoint origin must be a non-empty string")
        if "\n" in self.origin:
            raise NoteError("checkpoint origin must be a single line")
        _check_text_chars(self.origin, "checkpoint origin")
        if type(self.size) is not int or not 0 <= self.size <= _MAX_UINT64:
            raise NoteError(f"checkpoint size must be an int in [0, 2**64), got {self.size!r}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != _HASH_SIZE:
            raise NoteError("checkpoint root hash must be 32 bytes")
        if not isinstance(self.extensions, tuple):
            raise NoteError("checkpoint extensions must be a tuple of strings")
        for i, ext in enumerate(self.extensions):
            if not isinstance(ext, str) or not ext or "\n" in ext:
                raise NoteError(f"checkpoint extension line {i + 1} must be a non-empty single line")
            _check_text_chars(ext, f"checkpoint extension line {i + 1}")

    def to_body(self) -> str:
        """Return the note text: origin, size, base64 root hash and extensions, each ending in a newline."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Parse a checkpoint note text strictly.

        Raises:
            NoteError: if the body does not end with a newline, has fewer than three lines, an empty origin,
                a size that is not plain decimal (no sign, no leading zeros) or exceeds uint64, a root hash
                that is not canonical base64 of 32 bytes, an empty extension line, or control characters.
        """
        if not isinstance(body, str):
            raise NoteError(f"a checkpoint body must be a string, got {type(body).__name__}")
        if not body.endswith("\n"):
            raise NoteError("checkpoint body must end with a newline")
        _check_text_chars(body, "checkpoint body")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint body needs origin, size and root hash lines")
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise NoteError("checkpoint origin line is empty")
        if not _DECIMAL.fullmatch(size_text):
            raise NoteError(f"checkpoint size {size_text!r} is not a decimal number without leading zeros")
        size = int(size_text)
        if size > _MAX_UINT64:
            raise NoteError(f"checkpoint size {size_text} exceeds 2**64 - 1")
        root = _b64decode(root_text, "checkpoint root hash")
        if len(root) != _HASH_SIZE:
            raise NoteError(f"checkpoint root hash is {len(root)} bytes, expected 32")
        for i, ext in enumerate(extensions):
            if not ext:
                raise NoteError(f"checkpoint extension line {i + 1} is empty")
        return cls(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> str:
    """Return the checkpoint as a note signed by ``signers`` (normally the log key named like the origin).

    Raises:
        NoteError: as ``sign_note``.
    """
    return sign_note(checkpoint.to_body(), signers)


def open_checkpoint(note: str | bytes, verifiers: Iterable[Verifier]) -> tuple[Checkpoint, list[str]]:
    """Verify a signed checkpoint note; return the checkpoint and the names of the known keys that signed.

    Raises:
        NoteError: as ``open_note``, or if the verified text is not a valid checkpoint.
    """
    text, names = open_note(note, verifiers)
    return Checkpoint.parse(text), names


# ---------------------------------------------------------------------------------------------------------
# Cosignatures (cosignature/v1, Ed25519)
# ---------------------------------------------------------------------------------------------------------


def _check_timestamp(timestamp: int) -> None:
    if type(timestamp) is not int or not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp must be an int in [0, 2**63 - 1], got {timestamp!r}")


def _cosigned_bytes(text: str, timestamp: int) -> bytes:
    # "time" is followed by the decimal timestamp with no leading zeros, which str(int) guarantees.
    return f"{_COSIGNATURE_HEADER}time {timestamp}\n{text}".encode()


def cosignature_message(checkpoint_body: str, timestamp: int) -> bytes:
    """Return the bytes a cosigner signs: ``cosignature/v1\\ntime <timestamp>\\n`` + checkpoint body.

    Raises:
        NoteError: if the body is not a valid checkpoint or the timestamp is outside [0, 2**63 - 1].
    """
    Checkpoint.parse(checkpoint_body)
    _check_timestamp(timestamp)
    return _cosigned_bytes(checkpoint_body, timestamp)


def cosign(checkpoint_body: str, signer: CosignatureSigner, timestamp: int) -> str:
    """Cosign a checkpoint body at ``timestamp`` (POSIX seconds); return the signature line with newline.

    The line is ``— <name> base64(key ID || uint64 big-endian timestamp || Ed25519 signature)`` with the
    type-0x04 key ID; the signature covers ``cosignature_message(checkpoint_body, timestamp)``.

    Raises:
        NoteError: if the body is not a valid checkpoint or the timestamp is outside [0, 2**63 - 1].
        TypeError: if ``signer`` is not a CosignatureSigner.
    """
    if not isinstance(signer, CosignatureSigner):
        raise TypeError(f"cosign needs a CosignatureSigner, got {type(signer).__name__}")
    message = cosignature_message(checkpoint_body, timestamp)
    signature = timestamp.to_bytes(8, "big") + signer.sign(message)
    return NoteSignature(signer.name, signer.key_id, signature).line()


def _cosignature_timestamp(text: str, sig: NoteSignature, verifier: CosignatureVerifier) -> int:
    """Check one parsed cosignature by ``verifier`` over note text ``text``; return its timestamp."""
    who = f"{sig.name}+{sig.key_id.hex()}"
    if len(sig.signature) != 8 + _ED25519_SIG_SIZE:
        raise NoteError(f"cosignature from {who} is {len(sig.signature)} bytes, expected 8 + 64")
    timestamp = int.from_bytes(sig.signature[:8], "big")
    if timestamp > _MAX_TIMESTAMP:
        raise NoteError(f"cosignature from {who} has timestamp {timestamp} beyond 2**63 - 1")
    if not verifier.verify(_cosigned_bytes(text, timestamp), sig.signature[8:]):
        raise NoteError(f"invalid cosignature for key {who}")
    return timestamp


def verify_cosignature(checkpoint_body: str, signature_line: str, verifier: CosignatureVerifier) -> int:
    """Verify one cosignature line (with or without its newline) on a checkpoint body; return its timestamp.

    Raises:
        NoteError: if the body is not a valid checkpoint, the line is malformed or not from ``verifier``
            (name or key ID differ), the signature has the wrong length or a timestamp beyond 2**63 - 1, or
            it does not verify.
        TypeError: if ``verifier`` is not a CosignatureVerifier.
    """
    if not isinstance(verifier, CosignatureVerifier):
        raise TypeError(f"verify_cosignature needs a CosignatureVerifier, got {type(verifier).__name__}")
    Checkpoint.parse(checkpoint_body)
    if not isinstance(signature_line, str):
        raise NoteError("a cosignature line must be a string")
    sig = _parse_signature_line(signature_line.removesuffix("\n"), "cosignature line")
    if (sig.name, sig.key_id) != (verifier.name, verifier.key_id):
        raise NoteError(
            f"cosignature line is from {sig.name}+{sig.key_id.hex()}, "
            f"not from witness {verifier.name}+{verifier.key_id.hex()}"
        )
    return _cosignature_timestamp(checkpoint_body, sig, verifier)


def note_cosignatures(note: str | bytes, cosigners: Iterable[CosignatureVerifier]) -> dict[str, int]:
    """Verify the cosignatures in a checkpoint note from the given witnesses; return name -> timestamp.

    Only cosignatures are checked: open the checkpoint with the log's Verifier too (``open_checkpoint``).
    Lines from other keys are ignored; witnesses that did not cosign are absent from the result. If one
    witness cosigned more than once, the latest timestamp is reported.

    Raises:
        NoteError: if the note or its checkpoint text is malformed, a known witness's cosignature is
            invalid, or two different witnesses share a name and key ID.
        TypeError: if a cosigner is not a CosignatureVerifier.
    """
    text, signatures = parse_note(note)
    Checkpoint.parse(text)
    known = _index_verifiers(cosigners, CosignatureVerifier)
    timestamps: dict[str, int] = {}
    for sig in signatures:
        witness = known.get((sig.name, sig.key_id))
        if witness is not None:
            timestamp = _cosignature_timestamp(text, sig, witness)
            timestamps[sig.name] = max(timestamp, timestamps.get(sig.name, timestamp))
    return timestamps
