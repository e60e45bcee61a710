"""The pass signing identity: loading and checking Apple's certificate, and making development stand-ins.

Production signs passes with the Pass Type ID certificate Apple issues (subject ``UID`` = the pass type
identifier, ``OU`` = the team identifier, the marker extension ``1.2.840.113635.100.6.1.16``) and ships
Apple's WWDR intermediate inside every signature. :func:`load_pass_identity` checks all of that at
start-up, so a wrong file fails the deploy instead of every pass a phone downloads.

Development and tests use :func:`generate_dev_certs`: a local root and WWDR stand-in whose names say
"Kartka Development", a Pass Type ID certificate shaped like Apple's, an APNs auth key and a Google
service-account key. Nothing it makes is trusted by a phone, and production refuses it
(:attr:`PassIdentity.is_development`, :func:`is_development_service_account`).
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
from typing import Any, Final

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Apple's marker for a Pass Type ID (Passbook signing) leaf certificate; its value is the DER string of
#: the pass type identifier. Apple's own trust policy requires it on the signer of a pass.
PASS_TYPE_EXTENSION: Final = x509.ObjectIdentifier("1.2.840.113635.100.6.1.16")
#: The "Passbook signing" extended key usage Apple puts beside ``clientAuth`` on Pass Type ID certificates.
PASSBOOK_SIGNING_EKU: Final = x509.ObjectIdentifier("1.2.840.113635.100.4.14")

DEV_ROOT_CN: Final = "Kartka Development Root CA"
DEV_WWDR_CN: Final = "Kartka Development WWDR CA"
DEV_ORGANIZATION_CA: Final = "Kartka Development (not Apple)"
DEV_GOOGLE_PROJECT_ID: Final = "kartka-development-only"
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

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


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


class PassIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """A checked Pass Type ID certificate with its key and the WWDR intermediate that issued it."""

    pass_type_id: str
    """The certificate's ``UID``: what ``passTypeIdentifier`` in pass.json and the APNs topic must be."""
    team_id: str
    """The certificate's ``OU``: what ``teamIdentifier`` in pass.json must be."""
    certificate: x509.Certificate
    private_key: PrivateKey
    wwdr: x509.Certificate
    is_development: bool
    """The chain is the local stand-in from :func:`generate_dev_certs`: no phone accepts these passes."""

    @property
    def not_valid_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    def client_certificate_pem(self) -> bytes:
        """Certificate then unencrypted PKCS#8 key, in PEM: the file aioapns' certificate authentication
        (``ssl.SSLContext.load_cert_chain``) reads to push pass updates. It holds the key in clear:
        write it with mode 0600, or keep it in memory."""
        key = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return self.certificate.public_bytes(serialization.Encoding.PEM) + key


# -- loading what production uses ---------------------------------------------------------------------


def load_pass_identity(
    cert_file: Path, key_file: Path, wwdr_file: Path, *, key_password: str | None = None
) -> PassIdentity:
    """Load the Pass Type ID certificate, its private key and the WWDR certificate, and check that they
    can sign passes now. Raises :class:`ValueError` naming the file and what is wrong with it."""
    certificate = _load_certificate(cert_file, "the Pass Type ID certificate")
    wwdr = _load_certificate(wwdr_file, "the WWDR certificate")
    private_key = _load_private_key(key_file, key_password)

    pass_type_id = _subject_value(certificate, NameOID.USER_ID)
    if not pass_type_id:
        raise ValueError(
            f"{cert_file}: the certificate has no UID (0.9.2342.19200300.100.1.1) in its subject, so it is "
            "not a Pass Type ID certificate (Apple puts the pass type identifier there)"
        )
    team_id = _subject_value(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not team_id:
        raise ValueError(
            f"{cert_file}: the certificate has no OU in its subject, so it is not a Pass Type ID certificate "
            "(Apple puts the team identifier there)"
        )

    now = datetime.now(UTC)
    _check_validity(certificate, cert_file, "the Pass Type ID certificate", now)
    _check_validity(wwdr, wwdr_file, "the WWDR certificate", now)

    if _spki(private_key.public_key()) != _spki(certificate.public_key()):
        raise ValueError(f"{key_file}: this private key does not belong to the certificate in {cert_file}")

    try:
        certificate.verify_directly_issued_by(wwdr)
    except (ValueError, TypeError, InvalidSignature) as exc:
        reason = "the issuer name differs" if isinstance(exc, ValueError) else "the signature does not verify"
        raise ValueError(
            f"{cert_file}: the certificate was not issued by the WWDR certificate in {wwdr_file} ({reason}: "
            f"issued by {certificate.issuer.rfc4514_string()!r}, WWDR is {wwdr.subject.rfc4514_string()!r})"
        ) from exc

    try:
        marker = certificate.extensions.get_extension_for_oid(PASS_TYPE_EXTENSION).value
    except x509.ExtensionNotFound:
        raise ValueError(
            f"{cert_file}: the certificate lacks Apple's pass type extension ({PASS_TYPE_EXTENSION.dotted_string}); "
            "use the certificate issued for a Pass Type ID, not another Apple certificate"
        ) from None
    if isinstance(marker, x509.UnrecognizedExtension):
        named = _der_string(marker.value)
        if named is not None and named != pass_type_id:
            raise ValueError(
                f"{cert_file}: the pass type extension names {named!r} but the subject UID is {pass_type_id!r}"
            )

    with contextlib.suppress(x509.ExtensionNotFound):
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise ValueError(f"{cert_file}: the certificate's key usage does not allow digital signatures")

    return PassIdentity(
        pass_type_id=pass_type_id,
        team_id=team_id,
        certificate=certificate,
        private_key=private_key,
        wwdr=wwdr,
        is_development=_is_development_chain(certificate, wwdr),
    )


def _load_certificate(path: Path, what: str) -> x509.Certificate:
    data = _read(path, what)
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)[0]
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ValueError(f"{path}: {what} is not a PEM or DER X.509 certificate") from None


def _load_private_key(path: Path, password: str | None) -> PrivateKey:
    data = _read(path, "the Pass Type ID private key")
    secret = password.encode() if password is not None else None
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, secret)
        else:
            key = serialization.load_der_private_key(data, secret)
    except TypeError:
        if secret is None:
            raise ValueError(f"{path}: the private key is encrypted; give its password") from None
        raise ValueError(f"{path}: the private key is not encrypted; give no password") from None
    except ValueError:
        hint = " or the password is wrong" if secret is not None else ""
        raise ValueError(f"{path}: not a readable PEM or DER private key{hint}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: the private key must be RSA or EC, not {type(key).__name__}")
    return key


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


def _check_validity(certificate: x509.Certificate, path: Path, what: str, now: datetime) -> None:
    if now < certificate.not_valid_before_utc:
        raise ValueError(f"{path}: {what} is not valid before {certificate.not_valid_before_utc.isoformat()}")
    if now > certificate.not_valid_after_utc:
        raise ValueError(f"{path}: {what} expired on {certificate.not_valid_after_utc.isoformat()}")


def _subject_value(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    values = certificate.subject.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    text = value.decode() if isinstance(value, bytes) else value
    return text.strip() or None


def _common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[0].value
    return value.decode() if isinstance(value, bytes) else value


def _is_development_chain(certificate: x509.Certificate, wwdr: x509.Certificate) -> bool:
    return DEV_WWDR_CN in (_common_name(certificate.issuer), _common_name(wwdr.subject)) or (
        _common_name(wwdr.issuer) == DEV_ROOT_CN
    )


def _spki(key: Any) -> bytes:
    public: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public


def _der_string(der: bytes) -> str | None:
    """The text of a DER UTF8String, IA5String or PrintableString; ``None`` for anything else."""
    if len(der) < 2 or der[0] not in (0x0C, 0x16, 0x13):
        return None
    length, offset = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 2 or len(der) < 2 + count:
            return None
        length, offset = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    if offset + length != len(der):
        return None
    try:
        return der[offset:].decode()
    except UnicodeDecodeError:
        return None


def _der_utf8(text: str) -> bytes:
    body = text.encode()
    if len(body) < 0x80:
        return bytes([0x0C, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + body


# -- Google ---------------------------------------------------------------------------------------------


def is_development_service_account(info: dict[str, str]) -> bool:
    """Whether a Google service-account key is the one :func:`generate_dev_certs` made (production refuses it)."""
    email = info.get("client_email", "")
    return info.get("project_id") == DEV_GOOGLE_PROJECT_ID or email.endswith(
        f"@{DEV_GOOGLE_PROJECT_ID}.iam.gserviceaccount.com"
    )


# -- development material -------------------------------------------------------------------------------


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
    digest = hashlib.sha256(_spki(key.public_key())).digest()
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
        issuer = _common_name(x509.load_pem_x509_certificates(cert_file.read_bytes())[0].issuer)
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
        and _subject_value(identity.certificate, NameOID.ORGANIZATION_NAME) == organization
        and min(identity.not_valid_after, identity.wwdr.not_valid_after_utc, root.not_valid_after_utc) > renew_at
    )


def _usable_apns_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError, TypeError):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    return None


def _usable_google(path: Path) -> dict[str, str] | None:
    try:
        info = json.loads(path.read_text())
        key = serialization.load_pem_private_key(info["private_key"].encode(), None)
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
