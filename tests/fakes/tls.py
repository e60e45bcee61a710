"""Throwaway key material for the push provider fakes, made fresh for each run with ``cryptography``.

The adapters talk real TLS and sign real JWTs, so the fakes need what Apple and Google have: a CA the
client can be told to trust and a server certificate for 127.0.0.1, an APNs ES256 signing key (the
``.p8`` file Apple hands out) and a Google service account with an RSA key. Nothing here is a secret.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path  # the CA certificate a client adds to its trust roots
    cert_file: Path  # the server certificate (127.0.0.1 and localhost)
    key_file: Path  # its private key


@dataclass(frozen=True)
class ApnsKey:
    path: Path  # the .p8 file: PKCS#8 PEM of an EC P-256 key
    private_pem: str
    public_pem: str  # what the fake APNs checks signatures with


@dataclass(frozen=True)
class ServiceAccount:
    path: Path  # the service-account JSON file as Google hands it out
    info: dict[str, str]
    public_pem: str  # what the fake token endpoint checks assertions with


def make_tls(directory: Path) -> TlsFiles:
    """A CA and a server certificate it signed, valid for 127.0.0.1 and localhost, written to ``directory``."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kartka test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        ca_file=directory / "ca.pem", cert_file=directory / "server.pem", key_file=directory / "server-key.pem"
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


def make_apns_key(directory: Path, name: str = "AuthKey_TEST.p8") -> ApnsKey:
    """An APNs auth key like the ``AuthKey_<KEYID>.p8`` Apple issues: EC P-256, PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = directory / name
    path.write_text(private_pem)
    return ApnsKey(path=path, private_pem=private_pem, public_pem=_public_pem(key))


def make_service_account(
    directory: Path, *, token_uri: str, project_id: str = "kartka-test", name: str = "service-account.json"
) -> ServiceAccount:
    """A Google service-account JSON with a fresh RSA key, its ``token_uri`` pointing at a fake."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "test-key-1",
        "private_key": private_pem,
        "client_email": f"push@{project_id}.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    path = directory / name
    path.write_text(json.dumps(info, indent=2))
    return ServiceAccount(path=path, info=info, public_pem=_public_pem(key))


def _public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public.decode()
