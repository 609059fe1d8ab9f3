"""Tests for datavalley.ledger.note: C2SP signed notes, checkpoints and cosignatures."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from datavalley.ledger.note import (
    MAX_SIGNATURES,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    NoteError,
    NoteSignature,
    Signer,
    Verifier,
    append_signature_lines,
    cosign,
    cosignature_message,
    note_cosignatures,
    open_checkpoint,
    open_note,
    parse_cosignature_signer_key,
    parse_cosignature_verifier_key,
    parse_note,
    parse_signer_key,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verify_cosignature,
)

# The conformance vectors are copied into tests/data/standards (provenance in its README). It is required:
# a missing vectors file fails the tests that need it rather than skipping them.
REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = REPO_ROOT / "tests" / "data" / "standards" / "rfc9162" / "signed_note_vectors.json"


@pytest.fixture(scope="module")
def vectors() -> list[dict[str, Any]]:
    """The signed-note vectors (C2SP examples, golang.org/x/mod/sumdb/note, derived tamper case)."""
    if not VECTORS_PATH.exists():
        pytest.fail(f"{VECTORS_PATH} is missing; see tests/data/standards/README.md")
    data: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["vectors"]
    return data


def _seeded(seed: int) -> Ed25519PrivateKey:
    """A deterministic Ed25519 key, so failures reproduce."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"seed%d" % seed).digest())


LOG = Signer("log.example/ledger", _seeded(1))
OTHER = Signer("other.example/key", _seeded(2))
WITNESS = CosignatureSigner("witness.example/w1", _seeded(3))
WITNESS2 = CosignatureSigner("witness.example/w2", _seeded(4))
CHECKPOINT = Checkpoint("log.example/ledger", 20852163, hashlib.sha256(b"root").digest())
BODY = CHECKPOINT.to_body()


# ---------------------------------------------------------------------------------------------------------
# Vectors
# ---------------------------------------------------------------------------------------------------------


def test_vector_file_has_the_expected_cases(vectors: list[dict[str, Any]]) -> None:
    """The vector file holds the two valid notes, the tampered one and the checkpoint example."""
    assert [v["expect_valid"] for v in vectors] == [True, True, False, None]


def test_c2sp_example_vkey_and_note(vectors: list[dict[str, Any]]) -> None:
    """The C2SP signed-note example: key ID is SHA-256(name || 0x0A || 0x01 || key)[:4] and the note opens."""
    vector = vectors[0]
    verifier = parse_verifier_key(vector["vkey"])
    raw = base64.b64decode(vector["vkey"].split("+", 2)[2])
    assert raw[0] == 0x01 and verifier.public_key == raw[1:]
    assert verifier.key_id == hashlib.sha256(b"example.com/foo\n\x01" + raw[1:]).digest()[:4]
    assert verifier.key_id.hex() == "530d903a"
    assert verifier.verifier_key_string() == vector["vkey"]
    assert open_note(vector["signed_note"], [verifier]) == (
        "This is an example message.\n",
        ["example.com/foo"],
    )
    assert open_note(vector["signed_note"].encode(), [verifier])[1] == ["example.com/foo"]


def test_go_vector_signs_byte_for_byte(vectors: list[dict[str, Any]]) -> None:
    """The sumdb/note PeterNeumann key reproduces the Go-signed note exactly (Ed25519 is deterministic)."""
    vector = vectors[1]
    signer = parse_signer_key(vector["skey_go_format"])
    assert signer.signer_key_string() == vector["skey_go_format"]
    assert signer.verifier().verifier_key_string() == vector["vkey"]
    assert parse_verifier_key(vector["vkey"]) == signer.verifier()
    assert sign_note(vector["text"], [signer]) == vector["signed_note"]
    assert open_note(vector["signed_note"], [signer.verifier()]) == (vector["text"], ["PeterNeumann"])


def test_tampered_vector_is_rejected(vectors: list[dict[str, Any]]) -> None:
    """The Go note with one text byte changed fails with an invalid-signature NoteError."""
    vector = vectors[2]
    with pytest.raises(NoteError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        open_note(vector["signed_note"], [parse_verifier_key(vector["vkey"])])


def test_checkpoint_and_cosignature_example(vectors: list[dict[str, Any]]) -> None:
    """The C2SP checkpoint example parses; its cosignature line decodes to the example's signed message."""
    vector = vectors[3]
    text, sigs = parse_note(vector["checkpoint"])
    checkpoint = Checkpoint.parse(text)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.extensions == ()
    assert checkpoint.to_body() == text
    assert [s.name for s in sigs] == ["example.com/behind-the-sofa", "witness.example.com/w1"]
    assert len(sigs[0].signature) == 64
    # The cosignature is keyID(4) || timestamp(8, big endian) || Ed25519 signature(64).
    assert len(sigs[1].signature) == 8 + 64
    timestamp = int.from_bytes(sigs[1].signature[:8], "big")
    assert timestamp == 1679315147
    assert cosignature_message(text, timestamp) == vector["cosignature_v1_signed_message_example"].encode()
    assert [s.line() for s in sigs] == vector["checkpoint"].split("\n\n")[1].splitlines(keepends=True)
    # The spec publishes no public keys, so with ours the note has no known signer and no cosigners.
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(vector["checkpoint"], [LOG.verifier()])
    assert note_cosignatures(vector["checkpoint"], [WITNESS.verifier()]) == {}


# ---------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------


def test_multi_signer_round_trip_and_unknown_keys() -> None:
    """Several signers round-trip; unknown signatures are ignored; each known one is reported once."""
    note = sign_note("hello\n\nworld\n", [LOG, OTHER])
    assert open_note(note, [LOG.verifier(), OTHER.verifier()]) == ("hello\n\nworld\n", [LOG.name, OTHER.name])
    assert open_note(note, [OTHER.verifier()]) == ("hello\n\nworld\n", [OTHER.name])
    text, sigs = parse_note(note)
    assert text == "hello\n\nworld\n" and [s.key_id for s in sigs] == [LOG.key_id, OTHER.key_id]


def test_same_name_other_key_is_ignored_not_rejected() -> None:
    """A signature whose name matches but key ID differs is an unknown key, so it is skipped."""
    impostor = Signer(LOG.name, _seeded(99))
    note = sign_note("text\n", [impostor, OTHER])
    assert open_note(note, [LOG.verifier(), OTHER.verifier()])[1] == [OTHER.name]
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(sign_note("text\n", [impostor]), [LOG.verifier()])


def test_one_bad_known_signature_rejects_the_note() -> None:
    """If any known key's signature fails, the whole note is rejected even if another one verifies."""
    good = sign_note("text\n", [LOG])
    forged = NoteSignature(OTHER.name, OTHER.key_id, bytes(64)).line()
    note = append_signature_lines(good, [forged])
    with pytest.raises(NoteError, match=r"invalid signature for key other\.example/key\+"):
        open_note(note, [LOG.verifier(), OTHER.verifier()])
    assert open_note(note, [LOG.verifier()])[1] == [LOG.name]


def test_checkpoint_sign_open_and_cosign_round_trip() -> None:
    """A log-signed checkpoint with two witness cosignatures opens, and each cosignature verifies."""
    note = sign_checkpoint(CHECKPOINT, [LOG])
    line1 = cosign(BODY, WITNESS, 1_700_000_000)
    line2 = cosign(BODY, WITNESS2, 1_700_000_005)
    full = append_signature_lines(note, [line1, line2.removesuffix("\n"), line1])
    assert full.count(WITNESS.name) == 1
    assert open_checkpoint(full, [LOG.verifier()]) == (CHECKPOINT, [LOG.name])
    assert note_cosignatures(full, [WITNESS.verifier(), WITNESS2.verifier()]) == {
        WITNESS.name: 1_700_000_000,
        WITNESS2.name: 1_700_000_005,
    }
    assert verify_cosignature(BODY, line1, WITNESS.verifier()) == 1_700_000_000
    assert verify_cosignature(BODY, line2.strip(), WITNESS2.verifier()) == 1_700_000_005
    # Witness lines carry type-0x04 key IDs, so the log verifier alone never mistakes them for its own.
    assert (
        WITNESS.key_id == hashlib.sha256(WITNESS.name.encode() + b"\n\x04" + WITNESS.public_key).digest()[:4]
    )


def test_key_strings_round_trip() -> None:
    """Verifier and signer key strings of both types parse back to equal keys."""
    assert parse_verifier_key(LOG.verifier().verifier_key_string()) == LOG.verifier()
    assert parse_signer_key(LOG.signer_key_string()) == LOG
    witness_vkey = WITNESS.verifier().verifier_key_string()
    assert base64.b64decode(witness_vkey.split("+", 2)[2])[0] == 0x04
    assert parse_cosignature_verifier_key(witness_vkey) == WITNESS.verifier()
    assert parse_cosignature_signer_key(WITNESS.signer_key_string()) == WITNESS
    assert Signer.generate("fresh.example/k").verifier().name == "fresh.example/k"
    assert isinstance(CosignatureSigner.generate("fresh.example/w").verifier(), CosignatureVerifier)


def test_signature_limit() -> None:
    """Up to MAX_SIGNATURES lines are accepted; one more is a NoteError."""
    note = sign_note("t\n", [LOG])
    extra = [NoteSignature(f"k{i}", b"\0\0\0\0", bytes(64)).line() for i in range(MAX_SIGNATURES - 1)]
    full = append_signature_lines(note, extra)
    assert open_note(full, [LOG.verifier()])[1] == [LOG.name]
    with pytest.raises(NoteError, match="more than the limit"):
        open_note(full + NoteSignature("k-extra", b"\0\0\0\0", bytes(64)).line(), [LOG.verifier()])
    with pytest.raises(NoteError, match="more than the limit"):
        append_signature_lines(full, [NoteSignature("k-extra", b"\0\0\0\0", bytes(64)).line()])


# ---------------------------------------------------------------------------------------------------------
# Malformed inputs: each must raise NoteError with a message saying what is wrong
# ---------------------------------------------------------------------------------------------------------


def _noncanonical(b64: str) -> str:
    """Respell canonical base64 ending in one '=' by flipping an unused low bit of its last character.

    The result still decodes to the same bytes with a lenient decoder, which is exactly what must be refused.
    """
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert b64.endswith("=") and not b64.endswith("==")
    last = alphabet.index(b64[-2])
    return b64[:-2] + alphabet[last ^ 1] + "="


GOOD_NOTE = sign_note("line one\nline two\n", [LOG])
GOOD_SIG = GOOD_NOTE.split("\n\n")[1]
GOOD_B64 = GOOD_SIG.split(" ")[2].strip()

MALFORMED_NOTES: list[tuple[str, str | bytes, str]] = [
    ("no blank line", "text\n" + GOOD_SIG, "no blank line"),
    ("no signatures", "text\n\n", "no signature lines"),
    ("no final newline", GOOD_NOTE.removesuffix("\n"), "must end with a newline"),
    ("hyphen not em dash", GOOD_NOTE.replace("\u2014", "-"), "em dash"),
    ("en dash not em dash", GOOD_NOTE.replace("\u2014", "\u2013"), "em dash"),
    ("no space after name", GOOD_NOTE.replace(f"{LOG.name} ", LOG.name), "no signature after the key name"),
    ("empty name", GOOD_NOTE.replace(LOG.name, ""), "key name"),
    ("plus in name", GOOD_NOTE.replace(LOG.name, "a+b"), "must not contain"),
    ("bad base64", GOOD_NOTE.replace(GOOD_B64, "!!!!"), "not valid base64"),
    ("missing padding", GOOD_NOTE.replace(GOOD_B64, GOOD_B64.rstrip("=")), "not valid base64"),
    ("non-canonical base64", GOOD_NOTE.replace(GOOD_B64, _noncanonical(GOOD_B64)), "not canonical"),
    ("signature too short", GOOD_NOTE.replace(GOOD_B64, "AAAAAA=="), "needs a 4-byte key ID"),
    ("carriage return", GOOD_NOTE.replace("line one\n", "line one\r\n"), "control character U\\+000D"),
    ("tab", GOOD_NOTE.replace("line one", "line\tone"), "control character U\\+0009"),
    ("NUL", GOOD_NOTE.replace("line one", "line\0one"), "control character U\\+0000"),
    ("invalid UTF-8", GOOD_NOTE.encode().replace(b"one", b"\xff\xfe"), "not valid UTF-8"),
    ("lone surrogate", GOOD_NOTE.replace("one", "\udc80"), "not valid UTF-8"),
    ("trailing blank line", GOOD_NOTE + "\n", "no signature lines"),
    ("text after signatures", GOOD_NOTE + "junk\n", "em dash"),
]


@pytest.mark.parametrize(("case", "note", "message"), MALFORMED_NOTES, ids=[c for c, _, _ in MALFORMED_NOTES])
def test_malformed_notes_are_rejected(case: str, note: str | bytes, message: str) -> None:
    """Each structural defect of a note gives a NoteError naming it, in parse_note and open_note alike."""
    with pytest.raises(NoteError, match=message):
        parse_note(note)
    with pytest.raises(NoteError, match=message):
        open_note(note, [LOG.verifier()])


def test_good_note_baseline() -> None:
    """The note the malformed cases are derived from opens, so each case isolates its own defect."""
    assert open_note(GOOD_NOTE, [LOG.verifier()]) == ("line one\nline two\n", [LOG.name])


def test_note_argument_type_is_checked() -> None:
    """A note that is neither str nor bytes is a NoteError; a wrong verifier type is a TypeError."""
    bad: Any = 42
    with pytest.raises(NoteError, match="str or bytes"):
        parse_note(bad)
    wrong: Any = [WITNESS.verifier()]
    with pytest.raises(TypeError, match="Verifier"):
        open_note(GOOD_NOTE, wrong)


def test_ambiguous_verifiers_are_rejected() -> None:
    """Two different keys claiming one name and key ID make the verifier set unusable."""
    real = LOG.verifier()
    # Finding a real 32-bit key ID collision is too slow for a unit test, so forge a verifier carrying one.
    clone = Verifier.__new__(Verifier)
    object.__setattr__(clone, "name", real.name)
    object.__setattr__(clone, "public_key", OTHER.public_key)
    object.__setattr__(clone, "key_id", real.key_id)
    object.__setattr__(clone, "_key", OTHER.verifier()._key)
    with pytest.raises(NoteError, match="ambiguous"):
        open_note(GOOD_NOTE, [real, clone])
    assert open_note(GOOD_NOTE, [real, LOG.verifier()])[1] == [LOG.name]


SIGN_ERRORS: list[tuple[str, Any, Any, type[Exception], str]] = [
    ("no final newline", "text", [LOG], NoteError, "must end with a newline"),
    ("control character", "a\rb\n", [LOG], NoteError, "control character"),
    ("no signers", "text\n", [], NoteError, "at least one signer"),
    ("duplicate signer", "text\n", [LOG, LOG], NoteError, "duplicate signer"),
    ("text not str", b"text\n", [LOG], NoteError, "must be a string"),
    ("cosigner as signer", "text\n", [WITNESS], TypeError, "Signer"),
]


@pytest.mark.parametrize(
    ("case", "text", "signers", "error", "message"), SIGN_ERRORS, ids=[c[0] for c in SIGN_ERRORS]
)
def test_sign_note_rejects_bad_input(
    case: str, text: Any, signers: Any, error: type[Exception], message: str
) -> None:
    """sign_note refuses texts and signer lists that could not produce a valid note."""
    with pytest.raises(error, match=message):
        sign_note(text, signers)


ROOT_B64 = base64.b64encode(bytes(range(32))).decode()
MALFORMED_CHECKPOINTS: list[tuple[str, Any, str]] = [
    ("no final newline", f"o\n1\n{ROOT_B64}", "must end with a newline"),
    ("two lines", "o\n1\n", "needs origin, size and root hash"),
    ("empty origin", f"\n1\n{ROOT_B64}\n", "origin line is empty"),
    ("leading zero", f"o\n01\n{ROOT_B64}\n", "without leading zeros"),
    ("negative size", f"o\n-1\n{ROOT_B64}\n", "not a decimal"),
    ("plus sign", f"o\n+1\n{ROOT_B64}\n", "not a decimal"),
    ("space in size", f"o\n 1\n{ROOT_B64}\n", "not a decimal"),
    ("empty size", f"o\n\n{ROOT_B64}\n", "not a decimal"),
    ("hex size", f"o\n0x10\n{ROOT_B64}\n", "not a decimal"),
    ("non-ASCII digits", f"o\n\uff11\n{ROOT_B64}\n", "not a decimal"),
    ("underscore size", f"o\n1_0\n{ROOT_B64}\n", "not a decimal"),
    ("size beyond uint64", f"o\n{2**64}\n{ROOT_B64}\n", "exceeds"),
    ("root not base64", "o\n1\nnot base64!\n", "not valid base64"),
    ("root not canonical", f"o\n1\n{_noncanonical(ROOT_B64)}\n", "not canonical"),
    ("root 31 bytes", f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n", "31 bytes"),
    ("root 33 bytes", f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n", "33 bytes"),
    ("empty extension", f"o\n1\n{ROOT_B64}\n\n", "extension line 1 is empty"),
    ("empty second extension", f"o\n1\n{ROOT_B64}\next\n\n", "extension line 2 is empty"),
    ("carriage return", f"o\r\n1\n{ROOT_B64}\n", "control character"),
    ("not a string", f"o\n1\n{ROOT_B64}\n".encode(), "must be a string"),
]


@pytest.mark.parametrize(
    ("case", "body", "message"), MALFORMED_CHECKPOINTS, ids=[c for c, _, _ in MALFORMED_CHECKPOINTS]
)
def test_malformed_checkpoints_are_rejected(case: str, body: Any, message: str) -> None:
    """Checkpoint.parse is strict about every line of tlog-checkpoint."""
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(body)


def test_checkpoint_edge_values_parse() -> None:
    """Size 0, the largest uint64 size and extension lines are accepted and round-trip."""
    for size in (0, 2**64 - 1):
        body = f"example.com/log\n{size}\n{ROOT_B64}\n"
        assert Checkpoint.parse(body).size == size
        assert Checkpoint.parse(body).to_body() == body
    with_ext = f"o o\n7\n{ROOT_B64}\nfirst ext\nsecond\n"
    assert Checkpoint.parse(with_ext).extensions == ("first ext", "second")
    assert Checkpoint.parse(with_ext).to_body() == with_ext


BAD_CHECKPOINT_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("empty origin", {"origin": ""}, "origin"),
    ("multi-line origin", {"origin": "a\nb"}, "single line"),
    ("negative size", {"size": -1}, "size"),
    ("bool size", {"size": True}, "size"),
    ("huge size", {"size": 2**64}, "size"),
    ("short root", {"root_hash": bytes(31)}, "32 bytes"),
    ("root as str", {"root_hash": "00" * 32}, "32 bytes"),
    ("empty extension", {"extensions": ("",)}, "extension line 1"),
    ("extension with newline", {"extensions": ("a\nb",)}, "extension line 1"),
    ("extensions as list", {"extensions": ["a"]}, "tuple"),
]


@pytest.mark.parametrize(
    ("case", "fields", "message"), BAD_CHECKPOINT_FIELDS, ids=[c for c, _, _ in BAD_CHECKPOINT_FIELDS]
)
def test_checkpoint_constructor_validates(case: str, fields: dict[str, Any], message: str) -> None:
    """A Checkpoint value cannot be built with fields that would serialise to a malformed body."""
    args: dict[str, Any] = {"origin": "o", "size": 1, "root_hash": bytes(32), "extensions": ()} | fields
    with pytest.raises(NoteError, match=message):
        Checkpoint(**args)


LOG_VKEY = LOG.verifier().verifier_key_string()
_name, _id, _key64 = LOG_VKEY.split("+", 2)
_TYPE7_KEY = base64.b64encode(b"\x07" + LOG.public_key).decode()
_SHORT_KEY = base64.b64encode(b"\x01" + bytes(31)).decode()
BAD_VKEYS: list[tuple[str, Any, str]] = [
    ("two parts", f"{_name}+{_id}", "must look like"),
    ("short key ID", f"{_name}+{_id[:7]}+{_key64}", "8 hex digits"),
    ("0x key ID", f"{_name}+0x{_id[:6]}+{_key64}", "8 hex digits"),
    ("key ID mismatch", f"{_name}+{int(_id, 16) ^ 1:08x}+{_key64}", "does not match"),
    ("other name", f"other.example+{_id}+{_key64}", "does not match"),
    ("space in name", f"a b+{_id}+{_key64}", "must not contain"),
    ("empty name", f"+{_id}+{_key64}", "non-empty"),
    ("not base64", f"{_name}+{_id}+***", "not valid base64"),
    ("empty key", f"{_name}+{_id}+", "empty"),
    ("unknown type", f"{_name}+{_id}+{_TYPE7_KEY}", "type 0x07"),
    ("short key", f"{_name}+{_id}+{_SHORT_KEY}", "32 key bytes"),
    ("witness key", WITNESS.verifier().verifier_key_string(), "parse_cosignature_verifier_key"),
    ("not a string", LOG_VKEY.encode(), "must be a string"),
]


@pytest.mark.parametrize(("case", "vkey", "message"), BAD_VKEYS, ids=[c for c, _, _ in BAD_VKEYS])
def test_bad_verifier_keys_are_rejected(case: str, vkey: Any, message: str) -> None:
    """parse_verifier_key refuses malformed vkeys and vkeys whose key ID does not match."""
    with pytest.raises(NoteError, match=message):
        parse_verifier_key(vkey)


def test_bad_witness_and_signer_keys_are_rejected() -> None:
    """The cosigner and signer key parsers check type byte, format and key ID too."""
    with pytest.raises(NoteError, match="parse_verifier_key"):
        parse_cosignature_verifier_key(LOG_VKEY)
    skey = LOG.signer_key_string()
    with pytest.raises(NoteError, match="PRIVATE\\+KEY"):
        parse_signer_key(skey.replace("PRIVATE+KEY+", "SECRET+KEY+"))
    with pytest.raises(NoteError, match="does not match"):
        parse_signer_key(skey.replace(LOG.name, "other.example"))
    with pytest.raises(NoteError, match="0x01 followed by"):
        parse_signer_key(WITNESS.signer_key_string().replace(WITNESS.key_id.hex(), LOG.key_id.hex()))
    with pytest.raises(NoteError, match="0x04 followed by"):
        parse_cosignature_signer_key(skey)
    with pytest.raises(NoteError, match="32 bytes"):
        Verifier("name", bytes(31))
    with pytest.raises(NoteError, match="must not contain"):
        Signer("bad name", _seeded(5))
    not_a_key: Any = b"\0" * 32
    with pytest.raises(NoteError, match="Ed25519PrivateKey"):
        Signer("name", not_a_key)


def _line_with(signature: bytes, signer: CosignatureSigner = WITNESS) -> str:
    return NoteSignature(signer.name, signer.key_id, signature).line()


GOOD_COSIG = cosign(BODY, WITNESS, 1_700_000_000)
GOOD_COSIG_RAW = base64.b64decode(GOOD_COSIG.split(" ")[2])[4:]

BAD_COSIGNATURES: list[tuple[str, Any, Any, type[Exception], str]] = [
    ("other witness", BODY, cosign(BODY, WITNESS2, 1), NoteError, "not from witness"),
    ("log signature line", BODY, sign_note(BODY, [LOG]).split("\n\n")[1], NoteError, "not from witness"),
    (
        "different checkpoint",
        BODY.replace("20852163", "20852164"),
        GOOD_COSIG,
        NoteError,
        "invalid cosignature",
    ),
    ("wrong timestamp", BODY, _line_with(bytes(8) + GOOD_COSIG_RAW[8:]), NoteError, "invalid cosignature"),
    ("timestamp beyond 2**63-1", BODY, _line_with(b"\x80" + bytes(7) + bytes(64)), NoteError, "beyond"),
    ("no timestamp", BODY, _line_with(GOOD_COSIG_RAW[8:]), NoteError, "expected 8 \\+ 64"),
    ("truncated", BODY, _line_with(GOOD_COSIG_RAW[:-1]), NoteError, "expected 8 \\+ 64"),
    ("malformed line", BODY, GOOD_COSIG.replace("\u2014", "-"), NoteError, "em dash"),
    ("malformed body", "not a checkpoint\n", GOOD_COSIG, NoteError, "checkpoint body needs"),
    ("line not str", BODY, GOOD_COSIG.encode(), NoteError, "must be a string"),
]


@pytest.mark.parametrize(
    ("case", "body", "line", "error", "message"), BAD_COSIGNATURES, ids=[c[0] for c in BAD_COSIGNATURES]
)
def test_bad_cosignatures_are_rejected(
    case: str, body: Any, line: Any, error: type[Exception], message: str
) -> None:
    """verify_cosignature refuses foreign, altered, mis-sized and malformed cosignatures."""
    with pytest.raises(error, match=message):
        verify_cosignature(body, line, WITNESS.verifier())


def test_cosign_argument_checks() -> None:
    """cosign refuses out-of-range timestamps, bad bodies and non-witness keys; verifiers are typed too."""
    assert verify_cosignature(BODY, GOOD_COSIG, WITNESS.verifier()) == 1_700_000_000
    for timestamp in (-1, 2**63, True):
        with pytest.raises(NoteError, match="timestamp"):
            cosign(BODY, WITNESS, timestamp)
    assert verify_cosignature(BODY, cosign(BODY, WITNESS, 2**63 - 1), WITNESS.verifier()) == 2**63 - 1
    with pytest.raises(NoteError, match="without leading zeros"):
        cosign(BODY.replace("20852163", "020852163"), WITNESS, 1)
    log_key: Any = LOG
    with pytest.raises(TypeError, match="CosignatureSigner"):
        cosign(BODY, log_key, 1)
    log_verifier: Any = LOG.verifier()
    with pytest.raises(TypeError, match="CosignatureVerifier"):
        verify_cosignature(BODY, GOOD_COSIG, log_verifier)
    with pytest.raises(TypeError, match="CosignatureVerifier"):
        note_cosignatures(sign_note(BODY, [LOG]), [log_verifier])


def test_note_cosignatures_rejects_a_bad_known_cosignature() -> None:
    """A forged line under a known witness's name and key ID fails note_cosignatures."""
    note = append_signature_lines(sign_note(BODY, [LOG]), [_line_with(bytes(8) + GOOD_COSIG_RAW[8:])])
    with pytest.raises(NoteError, match="invalid cosignature"):
        note_cosignatures(note, [WITNESS.verifier()])
    with pytest.raises(NoteError, match="checkpoint"):
        note_cosignatures(sign_note("not a checkpoint\n", [LOG]), [WITNESS.verifier()])


# ---------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------

LINE_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, codec="utf-8"), max_size=30
)
NOTE_TEXTS = st.lists(LINE_TEXT, min_size=1, max_size=5).map(lambda lines: "\n".join(lines) + "\n")


@settings(max_examples=150, deadline=None)
@given(NOTE_TEXTS, st.data())
def test_any_byte_change_of_a_signed_note_fails_to_open(text: str, data: st.DataObject) -> None:
    """Changing any single byte of a signed note (text, separator, name, signature) makes open_note fail."""
    raw = bytearray(sign_note(text, [LOG]).encode())
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[position]), label="value")
    raw[position] = value
    with pytest.raises(NoteError):
        open_note(bytes(raw), [LOG.verifier()])


@settings(max_examples=100, deadline=None)
@given(NOTE_TEXTS)
def test_sign_open_round_trip(text: str) -> None:
    """Any valid note text signs and opens back to itself, as str and as UTF-8 bytes."""
    note = sign_note(text, [LOG, OTHER])
    assert open_note(note, [LOG.verifier()]) == (text, [LOG.name])
    assert open_note(note.encode(), [OTHER.verifier(), LOG.verifier()]) == (text, [LOG.name, OTHER.name])


ORIGINS = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, codec="utf-8"),
    min_size=1,
    max_size=20,
)


@settings(max_examples=100, deadline=None)
@given(
    ORIGINS,
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(ORIGINS, max_size=3).map(tuple),
)
def test_checkpoint_body_round_trip(origin: str, size: int, root: bytes, extensions: tuple[str, ...]) -> None:
    """Checkpoint.parse(to_body()) returns the same checkpoint for any valid field values."""
    checkpoint = Checkpoint(origin, size, root, extensions)
    assert Checkpoint.parse(checkpoint.to_body()) == checkpoint


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**63 - 1), st.data())
def test_any_byte_change_of_a_cosignature_fails(timestamp: int, data: st.DataObject) -> None:
    """A cosignature verifies with its timestamp, and any single changed byte of its line fails."""
    line = cosign(BODY, WITNESS, timestamp)
    assert verify_cosignature(BODY, line, WITNESS.verifier()) == timestamp
    raw = bytearray(line.removesuffix("\n").encode())
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[position] = data.draw(st.integers(0, 255).filter(lambda v: v != raw[position]), label="value")
    try:
        changed = raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # not representable as a line at all
    with pytest.raises(NoteError):
        verify_cosignature(BODY, changed, WITNESS.verifier())
