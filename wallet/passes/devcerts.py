"""Development and test stand-ins for Apple's and Google's key material; production never uses them.

:func:`generate_dev_certs` makes a local root and WWDR stand-in whose names say "Kartka Development", a
Pass Type ID certificate shaped like Apple's, an APNs auth key and a Google service-account key. Nothing
it makes is trusted by a phone, and production refuses it (``wallet.passes.identity``:
:attr:`PassIdentity.is_development`, :func:`is_development_service_account`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kartka.crypto import load_private_key
from wallet.passes.identity import (
    DEV_GOOGLE_PROJECT_ID,
    DEV_ROOT_CN,
    DEV_WWDR_CN,
    PASS_TYPE_EXTENSION,
    PASSBOOK_SIGNING_EKU,
    PrivateKey,
    common_name,
    is_development_service_account,
    load_pass_identity,
    spki,
    subject_value,
)

DEV_ORGANIZATION_CA: Final = "Kartka Development (not Apple)"
DEV_VALIDITY: Final = timedelta(days=730)
#: Development files this close to expiry are made again rather than kept.
DEV_RENEW_BEFORE: Final = timedelta(days=30)
CA_FILE: Final = "ca.pem"
WWDR_FILE: Final = "wwdr.pem"
SIGNING_CERT_FILE: Final = "pass.pem"
SIGNING_KEY_FILE: Final = "pass-key.pem"
APNS_KEY_FILE: Final = "apns-key.p8"
GOOGLE_FILE: Final = "google-service-account.json"
DESCRIPTION_FILE: Final = "dev-certs.json"


class DevCerts(msgspec.Struct, frozen=True, kw_only=True):
    """Where :func:`generate_dev_certs` put things (absolute paths) and the identifiers it used."""

    directory: Path
    pass_type_id: str
    team_id: str
    organization: str
    ca_file: Path
    wwdr_file: Path
    cert_file: Path
    key_file: Path
    apns_key_file: Path
    apns_key_id: str
    google_service_account_file: Path
    google_client_email: str
    description_file: Path


def generate_dev_certs(
    directory: Path,
    *,
    pass_type_id: str,
    team_id: str,
    organization: str,
    country: str = "BY",
    force: bool = False,
) -> DevCerts:
    """Write development (and test) stand-ins for Apple's and Google's key material into ``directory``.

    Files already there that are still usable for these identifiers are kept, so the APNs key id and
    Google key stay put across restarts; ``force`` makes everything again. Files with private keys are
    mode 0600. Several processes starting at once are serialised by a lock file in ``directory``.
    """
    if not pass_type_id.startswith("pass.") or len(pass_type_id) < 6:
        raise ValueError(f"pass_type_id must look like pass.com.example.loyalty, not {pass_type_id!r}")
    if not team_id or not team_id.isalnum():
        raise ValueError(f"team_id must be letters and digits (Apple's are 10 characters), not {team_id!r}")
    if not organization.strip():
        raise ValueError("organization must not be empty")
    if len(country) != 2 or not country.isalpha() or not country.isupper():
        raise ValueError(f"country must be a two-letter ISO code such as BY, not {country!r}")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(directory):
        paths = {name: directory / name for name in _ALL_FILES}
        _refuse_real_material(paths[SIGNING_CERT_FILE], paths[GOOGLE_FILE])
        if force or not _chain_usable(directory, pass_type_id, team_id, organization):
            _write_chain(directory, pass_type_id=pass_type_id, team_id=team_id, org=organization, country=country)
        apns_key = None if force else _usable_apns_key(paths[APNS_KEY_FILE])
        if apns_key is None:
            apns_key = ec.generate_private_key(ec.SECP256R1())
            _write_private(paths[APNS_KEY_FILE], _pkcs8(apns_key))
        google = None if force else _usable_google(paths[GOOGLE_FILE])
        if google is None:
            google = _google_service_account()
            _write_private(paths[GOOGLE_FILE], (json.dumps(google, indent=2) + "\n").encode())
        for name in (SIGNING_KEY_FILE, APNS_KEY_FILE, GOOGLE_FILE):
            paths[name].chmod(0o600)  # kept files too: a key left world-readable is tightened
        certificate = x509.load_pem_x509_certificate(paths[SIGNING_CERT_FILE].read_bytes())
        description = {
            "purpose": "development and tests only: signed by a local stand-in for Apple, refused in production",
            "pass_type_id": pass_type_id,
            "team_id": team_id,
            "organization": organization,
            "not_valid_after": certificate.not_valid_after_utc.isoformat(),
            "ca_file": CA_FILE,
            "wwdr_file": WWDR_FILE,
            "cert_file": SIGNING_CERT_FILE,
            "key_file": SIGNING_KEY_FILE,
            "apns_key_file": APNS_KEY_FILE,
            "apns_key_id": apns_key_id(apns_key),
            "apns_team_id": team_id,
            "google_service_account_file": GOOGLE_FILE,
            "google_client_email": google["client_email"],
        }
        text = json.dumps(description, indent=2) + "\n"
        if not paths[DESCRIPTION_FILE].exists() or paths[DESCRIPTION_FILE].read_text() != text:
            _write_public(paths[DESCRIPTION_FILE], text.encode())
    return load_dev_certs(directory)


def load_dev_certs(directory: Path) -> DevCerts:
    """Read ``dev-certs.json`` (written by :func:`generate_dev_certs`); its file names are relative to it."""
    directory = directory.resolve()
    path = directory / DESCRIPTION_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the development certificates' description: {exc}") from None
    try:
        return DevCerts(
            directory=directory,
            pass_type_id=info["pass_type_id"],
            team_id=info["team_id"],
            organization=info["organization"],
            ca_file=directory / info["ca_file"],
            wwdr_file=directory / info["wwdr_file"],
            cert_file=directory / info["cert_file"],
            key_file=directory / info["key_file"],
            apns_key_file=directory / info["apns_key_file"],
            apns_key_id=info["apns_key_id"],
            google_service_account_file=directory / info["google_service_account_file"],
            google_client_email=info["google_client_email"],
            description_file=path,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: missing or malformed entry {exc}") from None


def apns_key_id(key: ec.EllipticCurvePrivateKey) -> str:
    """A 10-character id like Apple's key ids, derived from the key so it survives restarts."""
    digest = hashlib.sha256(spki(key.public_key())).digest()
    return base64.b32encode(digest).decode()[:10]


_ALL_FILES: Final = (
    CA_FILE,
    WWDR_FILE,
    SIGNING_CERT_FILE,
    SIGNING_KEY_FILE,
    APNS_KEY_FILE,
    GOOGLE_FILE,
    DESCRIPTION_FILE,
)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory / ".dev-certs.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _refuse_real_material(cert_file: Path, google_file: Path) -> None:
    """Never write development files over a real certificate or Google key someone put there."""
    refuse = "; keep development material in a directory of its own"
    try:
        issuer = common_name(x509.load_pem_x509_certificates(cert_file.read_bytes())[0].issuer)
    except (OSError, ValueError):
        issuer = DEV_WWDR_CN  # missing or unreadable: nothing worth keeping
    if issuer != DEV_WWDR_CN:
        raise ValueError(f"{cert_file}: holds a certificate issued by {issuer!r}, not the development stand-in{refuse}")
    try:
        info = json.loads(google_file.read_text())
    except (OSError, ValueError):
        return
    if isinstance(info, dict) and info.get("type") == "service_account" and not is_development_service_account(info):
        raise ValueError(f"{google_file}: holds a real Google service-account key{refuse}")


def _chain_usable(directory: Path, pass_type_id: str, team_id: str, organization: str) -> bool:
    """The existing root, WWDR stand-in and pass certificate load, chain, fit these ids and are not about to expire."""
    try:
        identity = load_pass_identity(
            directory / SIGNING_CERT_FILE, directory / SIGNING_KEY_FILE, directory / WWDR_FILE
        )
        root = x509.load_pem_x509_certificate((directory / CA_FILE).read_bytes())
        identity.wwdr.verify_directly_issued_by(root)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    renew_at = datetime.now(UTC) + DEV_RENEW_BEFORE
    return (
        identity.is_development
        and identity.pass_type_id == pass_type_id
        and identity.team_id == team_id
        and subject_value(identity.certificate, NameOID.ORGANIZATION_NAME) == organization
        and min(identity.not_valid_after, identity.wwdr.not_valid_after_utc, root.not_valid_after_utc) > renew_at
    )


def _usable_apns_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = load_private_key(path.read_bytes())
    except (OSError, ValueError, TypeError):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    return None


def _usable_google(path: Path) -> dict[str, str] | None:
    try:
        info = json.loads(path.read_text())
        key = load_private_key(info["private_key"].encode())
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(info, dict) or not isinstance(key, rsa.RSAPrivateKey) or info.get("type") != "service_account":
        return None
    return info if is_development_service_account(info) else None


def _write_chain(directory: Path, *, pass_type_id: str, team_id: str, org: str, country: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=5)  # a little slack for clocks that disagree
    ca_end = now + DEV_VALIDITY + timedelta(days=30)  # issuers outlive what they issue

    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, DEV_ROOT_CN),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION_CA),
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
        ]
    )
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(ca_end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )

    wwdr_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wwdr_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, DEV_WWDR_CN),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "G4"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION_CA),
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
        ]
    )
    wwdr = (
        x509.CertificateBuilder()
        .subject_name(wwdr_name)
        .issuer_name(root_name)
        .public_key(wwdr_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(ca_end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(wwdr_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )

    pass_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pass_name = x509.Name(
        [
            x509.NameAttribute(NameOID.USER_ID, pass_type_id),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Pass Type ID: {pass_type_id}"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, team_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
        ]
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(pass_name)
        .issuer_name(wwdr_name)
        .public_key(pass_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + DEV_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # clientAuth: the same certificate authenticates pass-update pushes to APNs over TLS.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, PASSBOOK_SIGNING_EKU]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pass_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(wwdr_key.public_key()), critical=False)
        .add_extension(x509.UnrecognizedExtension(PASS_TYPE_EXTENSION, _der_utf8(pass_type_id)), critical=False)
        .sign(wwdr_key, hashes.SHA256())
    )

    # The key first: a certificate never sits beside a key it does not belong to for longer than a rename.
    _write_private(directory / SIGNING_KEY_FILE, _pkcs8(pass_key))
    _write_public(directory / SIGNING_CERT_FILE, leaf.public_bytes(serialization.Encoding.PEM))
    _write_public(directory / WWDR_FILE, wwdr.public_bytes(serialization.Encoding.PEM))
    _write_public(directory / CA_FILE, root.public_bytes(serialization.Encoding.PEM))


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _google_service_account() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"kartka-dev@{DEV_GOOGLE_PROJECT_ID}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": DEV_GOOGLE_PROJECT_ID,
        "private_key_id": secrets.token_hex(20),
        "private_key": _pkcs8(key).decode(),
        "client_email": email,
        "client_id": str(secrets.randbelow(9 * 10**20) + 10**20),  # 21 digits, as Google's
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email.replace('@', '%40')}",
        "universe_domain": "googleapis.com",
    }


def _pkcs8(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    _write_atomic(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    _write_atomic(path, data, 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write beside ``path`` with ``mode`` from the first byte, then rename over it."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # exactly ``mode``, whatever the umask
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _der_utf8(text: str) -> bytes:
    body = text.encode()
    if len(body) < 0x80:
        return bytes([0x0C, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + body
