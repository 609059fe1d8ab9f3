"""Registration certificates verify offline, and each kind of tampering is named by its own finding.

The receipts here are real: ledger entries encoded as the ledger encodes them, an RFC 9162 tree over them,
a checkpoint note signed with an Ed25519 exchange key, and the receipt dict assembled as
``ledger.service.receipt`` assembles it. No database is involved.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from datavalley.canonical import canonical_json, digest
from datavalley.errors import InvalidInput
from datavalley.ledger import merkle
from datavalley.ledger.note import Checkpoint, Signer, sign_checkpoint
from datavalley.ledger.service import RECEIPT_FORMAT
from datavalley.rights.certificates import (
    CERTIFICATE_FORMAT,
    build_certificate,
    render_html,
    sign_certificate,
    verify_certificate,
)

ORIGIN = "exchange.test/ledger"
HOLDER = "p_01HOLDER0000000000000000000"
RESOURCE = "r_01RESOURCE00000000000000000"
FINGERPRINT = "dvfp1:" + "ab" * 32
VALID_FROM = "2026-01-05T08:00:00+00:00"
VALID_UNTIL = "2029-01-04T08:00:00+00:00"
REGISTRATION_INDEX = 2

BAD_SIGNATURE = "signature does not verify with the exchange key"
BAD_CHECKPOINT = "receipt checkpoint does not verify with the exchange key"
BAD_PAYLOAD = "receipt entry payload digest does not match the registration event"
PINNED_DIFFERS = "the certificate names a different exchange key than the pinned one"


def _payload(fingerprint: str = FINGERPRINT) -> dict[str, Any]:
    """A registration payload as rights/registration.py ``_payload`` records it."""
    return {
        "resource": RESOURCE,
        "holder": HOLDER,
        "fingerprint": fingerprint,
        "version": 1,
        "row_count": 1200,
        "schema_digest": digest([["trip_id", "string"], ["distance_m", "int64"]]),
        "sector": "transport",
        "grade": "general",
        "valid_until": VALID_UNTIL,
    }


def _entry(index: int, type_: str, payload: dict[str, Any], subjects: list[str]) -> bytes:
    """A ledger entry: canonical JSON of the fields ledger/log.py ``encode_entry`` writes."""
    return canonical_json(
        {
            "actor": "m_01ACTOR000000000000000000000",
            "event": 100 + index,
            "index": index,
            "participant": HOLDER,
            "payload": digest(payload),
            "subjects": subjects,
            "time": f"2026-01-05T08:00:0{index}.000000Z",
            "type": type_,
            "v": 1,
        }
    )


def _log(registration_payload: dict[str, Any]) -> list[bytes]:
    """Five entries (not a power of two, so the proof has a promoted right edge); entry 2 registers."""
    return [
        _entry(0, "participant.registered", {"participant": HOLDER}, [HOLDER]),
        _entry(1, "participant.verified", {"participant": HOLDER}, [HOLDER]),
        _entry(REGISTRATION_INDEX, "resource.registered", registration_payload, [RESOURCE, HOLDER]),
        _entry(3, "resource.published", {"resource": RESOURCE}, [RESOURCE]),
        _entry(4, "participant.verified", {"participant": "p_other"}, ["p_other"]),
    ]


def _receipt(entries: list[bytes], index: int, signer: Signer, origin: str = ORIGIN) -> dict[str, Any]:
    """A receipt exactly as ledger/service.py ``receipt()`` builds it, over a freshly signed checkpoint."""
    note = sign_checkpoint(Checkpoint(origin, len(entries), merkle.root_hash(entries)), [signer])
    entry = entries[index]
    return {
        "format": RECEIPT_FORMAT,
        "index": index,
        "entry": base64.b64encode(entry).decode(),
        "leaf_hash": base64.b64encode(merkle.leaf_hash(entry)).decode(),
        "checkpoint": note,
        "inclusion_proof": [base64.b64encode(p).decode() for p in merkle.inclusion_proof(entries, index)],
    }


def _unsigned(
    signer: Signer, receipt: dict[str, Any], payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    scope = {
        "purposes": ["*"],
        "territories": ["*"],
        "valid_from": VALID_FROM,
        "valid_until": VALID_UNTIL,
        "sublicensable": True,
    }
    return build_certificate(
        certificate_id="c_01CERT00000000000000000000",
        issued_at=datetime(2026, 1, 6, 9, 30, 15, 123456, tzinfo=UTC),
        origin=signer.name,
        verifier_key=signer.verifier().verifier_key_string(),
        resource={
            "id": RESOURCE,
            "name": "Shenzhen taxi trips 2025",
            "version": 1,
            "fingerprint": FINGERPRINT,
            "row_count": 1200,
            "format": "parquet",
            "schema_digest": _payload()["schema_digest"],
        },
        holder={
            "participant_id": HOLDER,
            "name": "深圳出行数据有限公司",
            "country": "CN",
            "registry_id": "91440300279583285X",
        },
        rights=[
            {"id": f"g_0{i}", "kind": kind, "holder_id": HOLDER, "grantor_id": None, "scope": scope}
            for i, kind in enumerate(("holding", "processing_use", "product_operation"))
        ],
        classification={"sector": "transport", "grade": "general", "confirmed": False},
        validity={"from": VALID_FROM, "until": VALID_UNTIL},
        registration_event={"type": "resource.registered", "payload": payload or _payload()},
        receipt=receipt,
    )


@dataclass
class Setup:
    exchange: Signer
    entries: list[bytes]
    cert: dict[str, Any]

    @property
    def vkey(self) -> str:
        return self.exchange.verifier().verifier_key_string()


@pytest.fixture
def setup() -> Setup:
    exchange = Signer(ORIGIN, Ed25519PrivateKey.generate())
    entries = _log(_payload())
    cert = sign_certificate(_unsigned(exchange, _receipt(entries, REGISTRATION_INDEX, exchange)), exchange)
    return Setup(exchange, entries, cert)


def _resign(doc: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """Sign a modified document again, as if the exchange itself had issued it (isolates one check)."""
    return sign_certificate({k: v for k, v in doc.items() if k != "signature"}, signer)


# --- a genuine certificate ------------------------------------------------------------------------------


def test_certificate_verifies_with_pinned_key(setup: Setup) -> None:
    """The certificate verifies against the pinned exchange key and reports what it certifies."""
    check = verify_certificate(setup.cert, verifier_key=setup.vkey)
    assert check.ok and check.findings == ()
    assert (check.resource_id, check.fingerprint, check.holder) == (RESOURCE, FINGERPRINT, HOLDER)
    assert check.checkpoint_size == len(setup.entries)
    assert check.trusted_key_source == "pinned"


def test_certificate_verifies_with_its_own_key(setup: Setup) -> None:
    """Without a pinned key the issuer key is trusted, and the result says so."""
    check = verify_certificate(setup.cert)
    assert check.ok, check.findings
    assert check.trusted_key_source == "certificate"


def test_built_document_has_the_format(setup: Setup) -> None:
    """build_certificate writes the v1 format, UTC issue time to the second, and no signature."""
    doc = _unsigned(setup.exchange, setup.cert["receipt"])
    assert doc["format"] == CERTIFICATE_FORMAT
    assert doc["issued_at"] == "2026-01-06T09:30:15Z"
    assert doc["issuer"] == {"origin": ORIGIN, "verifier_key": setup.vkey}
    assert "signature" not in doc
    assert len(base64.b64decode(setup.cert["signature"])) == 64
    assert {k: v for k, v in setup.cert.items() if k != "signature"} == doc


def test_build_copies_its_inputs(setup: Setup) -> None:
    """Changing the caller's dicts after building does not change the document that gets signed."""
    payload = _payload()
    doc = _unsigned(setup.exchange, setup.cert["receipt"], payload)
    payload["fingerprint"] = "dvfp1:" + "00" * 32
    assert doc["registration_event"]["payload"]["fingerprint"] == FINGERPRINT


def test_issued_at_is_normalised_to_utc(setup: Setup) -> None:
    """A non-UTC issue time is converted, so every certificate states issued_at in Z form."""
    args = dict(
        certificate_id="c_X",
        origin=ORIGIN,
        verifier_key=setup.vkey,
        **{k: setup.cert[k] for k in ("resource", "holder", "rights", "classification", "validity")},
        registration_event=setup.cert["registration_event"],
        receipt=setup.cert["receipt"],
    )
    doc = build_certificate(
        issued_at=datetime(2026, 1, 6, 17, 0, tzinfo=timezone(timedelta(hours=8))), **args
    )
    assert doc["issued_at"] == "2026-01-06T09:00:00Z"


# --- tampering: each is caught with its own message -----------------------------------------------------


def _set_fingerprint(doc: dict[str, Any], _: Setup) -> None:
    doc["resource"]["fingerprint"] = "dvfp1:" + "cd" * 32


def _set_holder(doc: dict[str, Any], _: Setup) -> None:
    doc["holder"]["participant_id"] = "p_01MALLORY000000000000000000"
    for right in doc["rights"]:
        right["holder_id"] = "p_01MALLORY000000000000000000"


def _set_grade(doc: dict[str, Any], _: Setup) -> None:
    doc["classification"]["grade"] = "core"


def _set_payload_and_fingerprint(doc: dict[str, Any], _: Setup) -> None:
    # A consistent lie: certificate and carried payload agree, but not with what the ledger recorded.
    doc["resource"]["fingerprint"] = doc["registration_event"]["payload"]["fingerprint"] = (
        "dvfp1:" + "cd" * 32
    )


def _receipt_of_other_entry(doc: dict[str, Any], s: Setup) -> None:
    doc["receipt"] = _receipt(s.entries, 0, s.exchange)


def _forged_checkpoint(doc: dict[str, Any], s: Setup) -> None:
    # A forger logs a registration with another fingerprint and signs the checkpoint under the origin.
    forger = Signer(ORIGIN, Ed25519PrivateKey.generate())
    payload = _payload("dvfp1:" + "cd" * 32)
    doc["resource"]["fingerprint"] = "dvfp1:" + "cd" * 32
    doc["registration_event"]["payload"] = payload
    doc["receipt"] = _receipt(_log(payload), REGISTRATION_INDEX, forger)


def _checkpoint_of_other_log(doc: dict[str, Any], s: Setup) -> None:
    # The exchange key signs a checkpoint whose origin line names another log.
    doc["receipt"] = _receipt(s.entries, REGISTRATION_INDEX, s.exchange, origin="other.test/ledger")


def _reverse_validity(doc: dict[str, Any], _: Setup) -> None:
    doc["validity"]["from"] = "2030-01-01T00:00:00+00:00"


def _set_validity_end(doc: dict[str, Any], _: Setup) -> None:
    doc["validity"]["until"] = "2035-01-01T00:00:00+08:00"


def _set_right_holder(doc: dict[str, Any], _: Setup) -> None:
    doc["rights"][1]["holder_id"] = "p_01MALLORY000000000000000000"


def _set_version(doc: dict[str, Any], _: Setup) -> None:
    doc["resource"]["version"] = 2


@pytest.mark.parametrize(
    ("mutate", "resign", "expected"),
    [
        pytest.param(
            _set_fingerprint,
            False,
            {BAD_SIGNATURE, "certificate fingerprint differs from the registered one"},
            id="fingerprint",
        ),
        pytest.param(
            _set_fingerprint,
            True,
            {"certificate fingerprint differs from the registered one"},
            id="fingerprint-resigned",
        ),
        pytest.param(_set_holder, True, {"certificate holder differs from the registered one"}, id="holder"),
        pytest.param(
            _set_grade,
            False,
            {BAD_SIGNATURE, "certificate grade differs from the registered one"},
            id="grade",
        ),
        pytest.param(_set_payload_and_fingerprint, True, {BAD_PAYLOAD}, id="payload"),
        pytest.param(
            _receipt_of_other_entry,
            True,
            {
                "receipt entry type 'participant.registered' is not the registration event type "
                "'resource.registered'",
                BAD_PAYLOAD,
            },
            id="receipt-of-other-entry",
        ),
        pytest.param(_forged_checkpoint, True, {BAD_CHECKPOINT}, id="forged-checkpoint-key"),
        pytest.param(
            _checkpoint_of_other_log,
            True,
            {f"receipt checkpoint is from log 'other.test/ledger', not the issuer's {ORIGIN!r}"},
            id="checkpoint-of-other-log",
        ),
        pytest.param(_reverse_validity, True, {"certificate validity ends before it starts"}, id="validity"),
        pytest.param(
            _set_validity_end, True, {"certificate validity end differs from the registered one"}, id="until"
        ),
        pytest.param(
            _set_right_holder,
            True,
            {"right g_01 is held by p_01MALLORY000000000000000000, not by the certificate holder"},
            id="right-holder",
        ),
        pytest.param(
            _set_version, True, {"certificate version differs from the registered one"}, id="version"
        ),
    ],
)
def test_tampering_is_named(
    setup: Setup, mutate: Callable[[dict[str, Any], Setup], None], resign: bool, expected: set[str]
) -> None:
    """Each change is reported by the finding for that check (prefix match for the receipt's own error)."""
    doc = copy.deepcopy(setup.cert)
    mutate(doc, setup)
    if resign:
        doc = _resign(doc, setup.exchange)
    for key in (setup.vkey, None):
        check = verify_certificate(doc, verifier_key=key)
        assert not check.ok
        found = {next((e for e in expected if f.startswith(e)), f) for f in check.findings}
        assert found == expected, check.findings
        assert len(check.findings) == len(expected)


def test_forged_checkpoint_has_no_checkpoint_size(setup: Setup) -> None:
    """A receipt that does not verify yields no checkpoint size: nothing was established about the log."""
    doc = copy.deepcopy(setup.cert)
    _forged_checkpoint(doc, setup)
    check = verify_certificate(_resign(doc, setup.exchange), verifier_key=setup.vkey)
    assert check.checkpoint_size is None


def test_altered_signature(setup: Setup) -> None:
    """Flipping one bit of the signature is reported as a bad signature and nothing else."""
    raw = bytearray(base64.b64decode(setup.cert["signature"]))
    raw[10] ^= 0x01
    doc = {**setup.cert, "signature": base64.b64encode(bytes(raw)).decode()}
    check = verify_certificate(doc, verifier_key=setup.vkey)
    assert check.findings == (BAD_SIGNATURE,)


def test_wrong_pinned_key(setup: Setup) -> None:
    """Pinning another key (same origin name) fails the key, the signature and the receipt checkpoint."""
    other = Signer(ORIGIN, Ed25519PrivateKey.generate()).verifier().verifier_key_string()
    check = verify_certificate(setup.cert, verifier_key=other)
    assert not check.ok and check.trusted_key_source == "pinned"
    assert check.findings[:2] == (PINNED_DIFFERS, BAD_SIGNATURE)
    assert len(check.findings) == 3 and check.findings[2].startswith(BAD_CHECKPOINT)


def test_certificate_forged_under_another_key(setup: Setup) -> None:
    """A forger's self-consistent certificate passes on its own key; pinning the real key exposes it."""
    forger = Signer(ORIGIN, Ed25519PrivateKey.generate())
    payload = _payload("dvfp1:" + "cd" * 32)
    forged = sign_certificate(
        _unsigned(forger, _receipt(_log(payload), REGISTRATION_INDEX, forger), payload), forger
    )
    forged["resource"]["fingerprint"] = payload["fingerprint"]
    forged = _resign(forged, forger)
    unpinned = verify_certificate(forged)
    assert unpinned.ok and unpinned.trusted_key_source == "certificate"
    pinned = verify_certificate(forged, verifier_key=setup.vkey)
    assert PINNED_DIFFERS in pinned.findings and BAD_SIGNATURE in pinned.findings
    assert any(f.startswith(BAD_CHECKPOINT) for f in pinned.findings)


def test_issuer_origin_must_name_the_key(setup: Setup) -> None:
    """An issuer origin that is not the exchange key's name is reported."""
    doc = copy.deepcopy(setup.cert)
    doc["issuer"]["origin"] = "elsewhere.test/ledger"
    check = verify_certificate(_resign(doc, setup.exchange))
    assert any(f.startswith("issuer origin 'elsewhere.test/ledger' is not") for f in check.findings)


# --- malformed documents raise InvalidInput -------------------------------------------------------------


def _bad_b64(doc: dict[str, Any]) -> None:
    doc["signature"] = "not base64!"


def _non_canonical_b64(doc: dict[str, Any]) -> None:
    # The last character of an 88-character base64 of 64 bytes carries 4 unused bits; setting one
    # decodes to the same bytes but is a second spelling of the signature.
    sig = doc["signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    doc["signature"] = sig[:-3] + alphabet[alphabet.index(sig[-3]) ^ 1] + sig[-2:]


def _short_signature(doc: dict[str, Any]) -> None:
    doc["signature"] = base64.b64encode(b"\x00" * 32).decode()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(lambda d: d.pop("signature"), "signature", id="no-signature"),
        pytest.param(lambda d: d["resource"].pop("fingerprint"), "resource.fingerprint", id="no-fingerprint"),
        pytest.param(lambda d: d["holder"].pop("participant_id"), "holder.participant_id", id="no-holder-id"),
        pytest.param(lambda d: d.update(extra=1), "extra", id="unknown-field"),
        pytest.param(lambda d: d.update(format="something/v2"), "format", id="wrong-format"),
        pytest.param(_bad_b64, "signature", id="bad-base64"),
        pytest.param(_non_canonical_b64, "signature", id="non-canonical-base64"),
        pytest.param(_short_signature, "signature", id="short-signature"),
        pytest.param(lambda d: d["issuer"].update(verifier_key="nope"), "issuer.verifier_key", id="bad-key"),
        pytest.param(lambda d: d["receipt"].update(entry="%%%"), "receipt.entry", id="receipt-entry"),
        pytest.param(lambda d: d["receipt"].pop("checkpoint"), "receipt.checkpoint", id="receipt-note"),
        pytest.param(lambda d: d.update(receipt={"format": "x"}), "receipt", id="not-a-receipt"),
        pytest.param(lambda d: d["resource"].update(version=True), "resource.version", id="bool-version"),
        pytest.param(
            lambda d: d["classification"].update(grade="secret"), "classification.grade", id="grade"
        ),
        pytest.param(lambda d: d["rights"][0].update(kind="owning"), "rights[0].kind", id="right-kind"),
        pytest.param(
            lambda d: d["validity"].update({"from": "2026-01-05"}), "validity.from", id="naive-time"
        ),
        pytest.param(lambda d: d["validity"].update(until="soon"), "validity.until", id="not-a-time"),
        pytest.param(
            lambda d: d.update(issued_at="2026-01-06T09:30:15+00:00"), "issued_at", id="issued-not-z"
        ),
        pytest.param(
            lambda d: d["registration_event"]["payload"].pop("holder"),
            "registration_event.payload.holder",
            id="payload-holder",
        ),
    ],
)
def test_malformed_certificate_is_invalid_input(
    setup: Setup, mutate: Callable[[dict[str, Any]], Any], field: str
) -> None:
    """Malformed documents raise InvalidInput naming the field, instead of producing findings."""
    doc = copy.deepcopy(setup.cert)
    mutate(doc)
    with pytest.raises(InvalidInput) as info:
        verify_certificate(doc)
    assert info.value.details["field"] == field


@pytest.mark.parametrize("value", [None, [], "certificate", 42])
def test_non_object_is_invalid_input(value: Any) -> None:
    """Anything but a JSON object is refused as such."""
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        verify_certificate(value)


def test_malformed_pinned_key_is_invalid_input(setup: Setup) -> None:
    """A pinned key that does not parse is the caller's input error, not a finding."""
    with pytest.raises(InvalidInput) as info:
        verify_certificate(setup.cert, verifier_key="exchange.test/ledger+00000000+AAAA")
    assert info.value.details["field"] == "verifier_key"


# --- building and signing refuse what could never verify ------------------------------------------------


def test_build_refuses_naive_issue_time(setup: Setup) -> None:
    """A naive issue time is ambiguous and refused."""
    args = {k: setup.cert[k] for k in ("resource", "holder", "rights", "classification", "validity")}
    with pytest.raises(InvalidInput, match="timezone-aware"):
        build_certificate(
            certificate_id="c_X",
            issued_at=datetime(2026, 1, 6),
            origin=ORIGIN,
            verifier_key=setup.vkey,
            registration_event=setup.cert["registration_event"],
            receipt=setup.cert["receipt"],
            **args,
        )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(lambda a: a["holder"].pop("country"), "holder.country", id="missing-field"),
        pytest.param(
            lambda a: a["registration_event"].update(type="right.granted"),
            "registration_event.type",
            id="type",
        ),
        pytest.param(lambda a: a.update(verifier_key="x"), "issuer.verifier_key", id="key"),
        pytest.param(lambda a: a.update(certificate_id="r_1"), "certificate_id", id="id"),
        pytest.param(lambda a: a["resource"].update(row_count=1.5), "resource.row_count", id="float"),
    ],
)
def test_build_refuses_bad_fields(setup: Setup, change: Callable[[dict[str, Any]], Any], field: str) -> None:
    """Missing or wrong fields raise InvalidInput naming the field."""
    args: dict[str, Any] = copy.deepcopy(
        {k: setup.cert[k] for k in ("resource", "holder", "rights", "classification", "validity")}
    )
    args |= {
        "certificate_id": setup.cert["certificate_id"],
        "issued_at": datetime.now(UTC),
        "origin": ORIGIN,
        "verifier_key": setup.vkey,
        "registration_event": copy.deepcopy(setup.cert["registration_event"]),
        "receipt": setup.cert["receipt"],
    }
    change(args)
    with pytest.raises(InvalidInput) as info:
        build_certificate(**args)
    assert info.value.details["field"] == field


def test_sign_refuses_another_key(setup: Setup) -> None:
    """Signing with a key other than the issuer key is refused: the certificate could never verify."""
    unsigned = {k: v for k, v in setup.cert.items() if k != "signature"}
    with pytest.raises(InvalidInput, match="is not the issuer key"):
        sign_certificate(unsigned, Signer(ORIGIN, Ed25519PrivateKey.generate()))


def test_sign_refuses_signed_document(setup: Setup) -> None:
    """A signed document is not signed again (the old signature would be signed over)."""
    with pytest.raises(InvalidInput, match="already signed"):
        sign_certificate(setup.cert, setup.exchange)


# --- HTML -----------------------------------------------------------------------------------------------


def test_render_html_escapes_and_shows_the_essentials(setup: Setup) -> None:
    """The page escapes every value, and shows fingerprint, IDs, ledger position and how to verify."""
    doc = copy.deepcopy(setup.cert)
    doc["resource"]["name"] = '<script>alert("x")</script> & 出行'
    doc["holder"]["name"] = "A&B <b>Co</b>"
    page = render_html(_resign(doc, setup.exchange))
    assert "<script" not in page and "<b>Co" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 出行" in page
    assert "A&amp;B &lt;b&gt;Co&lt;/b&gt;" in page
    assert page.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in page
    assert "数据资源登记证书" in page and "Data Resource Registration Certificate" in page
    for value in (FINGERPRINT, RESOURCE, HOLDER, setup.cert["certificate_id"], "数据加工使用权", "一般数据"):
        assert value in page
    assert f"<td>{REGISTRATION_INDEX}</td>" in page and f"<td>{len(setup.entries)}</td>" in page
    assert "datavalley cert verify FILE" in page
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch


def test_render_html_previews_unsigned_and_refuses_malformed(setup: Setup) -> None:
    """An unsigned draft renders (marked unsigned); a malformed document raises InvalidInput."""
    unsigned = {k: v for k, v in setup.cert.items() if k != "signature"}
    assert "未签名 / unsigned" in render_html(unsigned)
    with pytest.raises(InvalidInput):
        render_html({**unsigned, "resource": {}})
