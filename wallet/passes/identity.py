"""The pass signing identity production uses: Apple's Pass Type ID certificate, loaded and checked.

Production signs passes with the Pass Type ID certificate Apple issues (subject ``UID`` = the pass type
identifier, ``OU`` = the team identifier, the marker extension ``1.2.840.113635.100.6.1.16``) and ships
Apple's WWDR intermediate inside every signature. :func:`load_pass_identity` checks all of that at
start-up, so a wrong file fails the deploy instead of every pass a phone downloads. It also recognises
the development stand-ins (``wallet.passes.devcerts``) by their names, so production can refuse them
(:attr:`PassIdentity.is_development`, :func:`is_development_service_account`).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kartka.crypto import load_private_key

#: Apple's marker for a Pass Type ID (Passbook signing) leaf certificate; its value is the DER string of
#: the pass type identifier. Apple's own trust policy requires it on the signer of a pass.
PASS_TYPE_EXTENSION: Final = x509.ObjectIdentifier("1.2.840.113635.100.6.1.16")
#: The "Passbook signing" extended key usage Apple puts beside ``clientAuth`` on Pass Type ID certificates.
PASSBOOK_SIGNING_EKU: Final = x509.ObjectIdentifier("1.2.840.113635.100.4.14")

#: The names the development stand-ins carry: how production tells them from Apple's and Google's.
DEV_ROOT_CN: Final = "Kartka Development Root CA"
DEV_WWDR_CN: Final = "Kartka Development WWDR CA"
DEV_GOOGLE_PROJECT_ID: Final = "kartka-development-only"


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


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
    """The chain is the local stand-in from ``wallet.passes.devcerts``: no phone accepts these passes."""

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

    pass_type_id = subject_value(certificate, NameOID.USER_ID)
    if not pass_type_id:
        raise ValueError(
            f"{cert_file}: the certificate has no UID (0.9.2342.19200300.100.1.1) in its subject, so it is "
            "not a Pass Type ID certificate (Apple puts the pass type identifier there)"
        )
    team_id = subject_value(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not team_id:
        raise ValueError(
            f"{cert_file}: the certificate has no OU in its subject, so it is not a Pass Type ID certificate "
            "(Apple puts the team identifier there)"
        )

    now = datetime.now(UTC)
    _check_validity(certificate, cert_file, "the Pass Type ID certificate", now)
    _check_validity(wwdr, wwdr_file, "the WWDR certificate", now)

    if spki(private_key.public_key()) != spki(certificate.public_key()):
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
        key = load_private_key(data, secret)
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


def subject_value(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    values = certificate.subject.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    text = value.decode() if isinstance(value, bytes) else value
    return text.strip() or None


def common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[0].value
    return value.decode() if isinstance(value, bytes) else value


def _is_development_chain(certificate: x509.Certificate, wwdr: x509.Certificate) -> bool:
    return DEV_WWDR_CN in (common_name(certificate.issuer), common_name(wwdr.subject)) or (
        common_name(wwdr.issuer) == DEV_ROOT_CN
    )


def spki(key: Any) -> bytes:
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


# -- Google ---------------------------------------------------------------------------------------------


def is_development_service_account(info: dict[str, str]) -> bool:
    """Whether a Google service-account key is the one ``wallet.passes.devcerts`` made (production refuses it)."""
    email = info.get("client_email", "")
    return info.get("project_id") == DEV_GOOGLE_PROJECT_ID or email.endswith(
        f"@{DEV_GOOGLE_PROJECT_ID}.iam.gserviceaccount.com"
    )
