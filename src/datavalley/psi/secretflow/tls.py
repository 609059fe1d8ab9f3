"""Per-session TLS for the engines' link, bound to the participants' registered Ed25519 keys.

Each party makes a fresh ECDSA P-256 key and a self-signed certificate for one session (valid for an
hour). The certificate travels inside the node's *signed* session messages (docs/PSI.md section 5: every
request and answer is Ed25519-signed with the participant's key registered at the exchange), so the peer's
certificate is authenticated by that signature; each side then pins the other's certificate as the only
CA of the link. The engine's TLS (brpc over OpenSSL) refuses any other certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from datavalley.errors import InvalidInput

__all__ = ["SessionCert", "check_peer_certificate", "session_certificate"]

LIFETIME = datetime.timedelta(hours=1)
MAX_PEM = 4096


@dataclass(frozen=True)
class SessionCert:
    """A party's session certificate (PEM) and where its files are."""

    pem: str
    cert_path: Path
    key_path: Path


def session_certificate(participant: str, session: str, directory: Path) -> SessionCert:
    """A fresh key and self-signed certificate naming ``participant`` and ``session`` (files 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{participant} psi {session}"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, participant[:64]),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "own.pem", directory / "own.key"
    pem = cert.public_bytes(serialization.Encoding.PEM)
    for path, data in (
        (cert_path, pem),
        (
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        ),
    ):
        path.touch(mode=0o600)
        path.write_bytes(data)
    return SessionCert(pem.decode(), cert_path, key_path)


def check_peer_certificate(pem: object, directory: Path) -> Path:
    """Validate the peer's PEM certificate (one, currently valid, P-256) and store it as the link's CA."""
    if not isinstance(pem, str) or not 0 < len(pem) <= MAX_PEM:
        raise InvalidInput("cert must be one PEM certificate", field="cert")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise InvalidInput(f"cert is not a PEM certificate: {exc}", field="cert") from None
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise InvalidInput("cert is not valid now", field="cert")
    if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
        raise InvalidInput("cert must carry an ECDSA P-256 key", field="cert")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "peer.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path
