"""The pass signing identity: development material is made once and kept, and the loader refuses
everything Apple would (or that would fail at the first pass a phone downloads)."""

from __future__ import annotations

import json
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fakes.tls import make_service_account
from wallet.passes.devcerts import DevCerts, apns_key_id, generate_dev_certs, load_dev_certs
from wallet.passes.identity import (
    DEV_ROOT_CN,
    DEV_WWDR_CN,
    PASS_TYPE_EXTENSION,
    is_development_service_account,
    load_pass_identity,
)

PASS_TYPE_ID = "pass.by.kartka.loyalty"
TEAM_ID = "KARTKADEV1"


def make(directory: Path, *, pass_type_id: str = PASS_TYPE_ID, force: bool = False) -> DevCerts:
    return generate_dev_certs(directory, pass_type_id=pass_type_id, team_id=TEAM_ID, organization="Kartka", force=force)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return generate_dev_certs(
        tmp_path_factory.mktemp("dev-certs"), pass_type_id=PASS_TYPE_ID, team_id=TEAM_ID, organization="Kartka"
    )


# -- a chain of our own, to make certificates Apple would refuse ------------------------------------------


class Issuer:
    """A WWDR-like intermediate whose key the test holds (the development one's key is never written)."""

    def __init__(self, cn: str = "Test WWDR CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        uid: str | None = PASS_TYPE_ID,
        ou: str | None = TEAM_ID,
        marker: bytes | None = b"\x0c\x16" + PASS_TYPE_ID.encode(),
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> x509.Certificate:
        now = datetime.now(UTC)
        attributes = []
        if uid is not None:
            attributes.append(x509.NameAttribute(NameOID.USER_ID, uid))
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, f"Pass Type ID: {uid}"))
        if ou is not None:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=10))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if marker is not None:
            builder = builder.add_extension(x509.UnrecognizedExtension(PASS_TYPE_EXTENSION, marker), critical=False)
        return builder.sign(self.key, hashes.SHA256())


def write_pem(path: Path, item: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    if isinstance(item, x509.Certificate):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            item.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


def chain(directory: Path, issuer: Issuer, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, ...]:
    return (
        write_pem(directory / "cert.pem", cert),
        write_pem(directory / "key.pem", key),
        write_pem(directory / "wwdr.pem", issuer.cert),
    )


# -- the development material -------------------------------------------------------------------------------


def test_dev_certs_load_as_a_development_identity(dev: DevCerts) -> None:
    identity = load_pass_identity(dev.cert_file, dev.key_file, dev.wwdr_file)
    assert identity.pass_type_id == PASS_TYPE_ID
    assert identity.team_id == TEAM_ID
    assert identity.is_development
    assert timedelta(days=700) < identity.not_valid_after - datetime.now(UTC) < timedelta(days=740)

    cert = identity.certificate
    subject = {a.oid: a.value for a in cert.subject}
    assert subject[NameOID.USER_ID] == PASS_TYPE_ID
    assert subject[NameOID.COMMON_NAME] == f"Pass Type ID: {PASS_TYPE_ID}"
    assert subject[NameOID.ORGANIZATIONAL_UNIT_NAME] == TEAM_ID
    assert subject[NameOID.ORGANIZATION_NAME] == "Kartka"
    assert NameOID.COUNTRY_NAME in subject
    assert cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == DEV_WWDR_CN
    assert identity.wwdr.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == DEV_ROOT_CN

    marker = cert.extensions.get_extension_for_oid(PASS_TYPE_EXTENSION)
    assert not marker.critical
    assert isinstance(marker.value, x509.UnrecognizedExtension)
    assert marker.value.value == b"\x0c" + bytes([len(PASS_TYPE_ID)]) + PASS_TYPE_ID.encode()  # DER UTF8String
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    key = identity.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert dev.key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted

    root = x509.load_pem_x509_certificate(dev.ca_file.read_bytes())
    identity.wwdr.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)


def test_dev_certs_apns_and_google_keys(dev: DevCerts) -> None:
    apns = serialization.load_pem_private_key(dev.apns_key_file.read_bytes(), None)
    assert isinstance(apns, ec.EllipticCurvePrivateKey)
    assert isinstance(apns.curve, ec.SECP256R1)
    assert dev.apns_key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert dev.apns_key_id == apns_key_id(apns)
    assert len(dev.apns_key_id) == 10
    assert dev.apns_key_id.isalnum()
    assert dev.apns_key_id.isupper() or dev.apns_key_id.isdigit()

    info = json.loads(dev.google_service_account_file.read_text())
    assert info["type"] == "service_account"
    assert info["token_uri"] == "https://oauth2.googleapis.com/token"
    assert info["client_email"].endswith(".iam.gserviceaccount.com")
    assert info["client_email"] == dev.google_client_email
    assert {"project_id", "private_key_id", "client_id"} <= info.keys()
    google = serialization.load_pem_private_key(info["private_key"].encode(), None)
    assert isinstance(google, rsa.RSAPrivateKey)
    assert google.key_size == 2048
    assert is_development_service_account(info)


def test_a_real_looking_service_account_is_not_development(tmp_path: Path) -> None:
    account = make_service_account(tmp_path, token_uri="https://oauth2.googleapis.com/token")
    assert not is_development_service_account(account.info)


def test_description_file_finds_everything(dev: DevCerts) -> None:
    assert load_dev_certs(dev.directory) == dev
    described = json.loads(dev.description_file.read_text())
    assert described["apns_key_id"] == dev.apns_key_id
    assert described["pass_type_id"] == PASS_TYPE_ID
    assert described["team_id"] == TEAM_ID
    for name in ("ca_file", "wwdr_file", "cert_file", "key_file", "apns_key_file", "google_service_account_file"):
        assert (dev.directory / described[name]).is_file()


def test_private_key_files_are_0600_and_certificates_public(dev: DevCerts) -> None:
    for path in (dev.key_file, dev.apns_key_file, dev.google_service_account_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (dev.ca_file, dev.wwdr_file, dev.cert_file, dev.description_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_generating_again_keeps_the_files_and_force_replaces_them(tmp_path: Path) -> None:
    first = make(tmp_path)
    files = [first.ca_file, first.wwdr_file, first.cert_file, first.key_file, first.apns_key_file]
    files.append(first.google_service_account_file)
    before = {path: path.read_bytes() for path in files}

    first.key_file.chmod(0o644)  # someone loosened it: kept, but tightened again
    again = make(tmp_path)
    assert again == first
    assert {path: path.read_bytes() for path in files} == before
    assert stat.S_IMODE(first.key_file.stat().st_mode) == 0o600

    other_id = make(tmp_path, pass_type_id="pass.by.kartka.other")
    assert load_pass_identity(other_id.cert_file, other_id.key_file, other_id.wwdr_file).pass_type_id == (
        "pass.by.kartka.other"
    )
    assert other_id.cert_file.read_bytes() != before[first.cert_file]
    assert other_id.apns_key_id == first.apns_key_id  # only what depends on the ids is made again

    kept = {path: path.read_bytes() for path in files}
    forced = make(tmp_path, pass_type_id="pass.by.kartka.other", force=True)
    assert forced.apns_key_id != first.apns_key_id
    for path in files:
        assert path.read_bytes() != kept[path], path


def test_a_broken_chain_is_made_again(tmp_path: Path) -> None:
    first = make(tmp_path)
    first.key_file.write_bytes(b"garbage")
    again = make(tmp_path)
    load_pass_identity(again.cert_file, again.key_file, again.wwdr_file)
    assert again.apns_key_id == first.apns_key_id


def test_real_material_is_never_overwritten(tmp_path: Path) -> None:
    issuer, key = (
        Issuer("Apple Worldwide Developer Relations Certification Authority"),
        ec.generate_private_key(ec.SECP256R1()),
    )
    write_pem(tmp_path / "pass.pem", issuer.issue(key))
    with pytest.raises(ValueError, match=r"pass\.pem: holds a certificate issued by 'Apple Worldwide"):
        generate_dev_certs(tmp_path, pass_type_id=PASS_TYPE_ID, team_id=TEAM_ID, organization="Kartka", force=True)

    other = tmp_path / "other"
    other.mkdir()
    make_service_account(other, token_uri="https://oauth2.googleapis.com/token", name="google-service-account.json")
    with pytest.raises(ValueError, match="holds a real Google service-account key"):
        generate_dev_certs(other, pass_type_id=PASS_TYPE_ID, team_id=TEAM_ID, organization="Kartka")


def test_generate_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pass_type_id must look like pass"):
        generate_dev_certs(tmp_path, pass_type_id="com.example", team_id=TEAM_ID, organization="Kartka")
    with pytest.raises(ValueError, match="team_id"):
        generate_dev_certs(tmp_path, pass_type_id=PASS_TYPE_ID, team_id="not valid!", organization="Kartka")


def test_client_certificate_pem_is_what_tls_loads(dev: DevCerts, tmp_path: Path) -> None:
    identity = load_pass_identity(dev.cert_file, dev.key_file, dev.wwdr_file)
    pem = identity.client_certificate_pem()
    assert pem.count(b"-----BEGIN CERTIFICATE-----") == 1
    assert b"-----BEGIN PRIVATE KEY-----" in pem
    path = tmp_path / "apns-client.pem"
    path.write_bytes(pem)
    ssl.create_default_context(ssl.Purpose.SERVER_AUTH).load_cert_chain(path)


# -- what the loader refuses ----------------------------------------------------------------------------------


def test_loads_a_chain_that_is_not_the_development_one(tmp_path: Path) -> None:
    issuer, key = Issuer(), ec.generate_private_key(ec.SECP256R1())
    identity = load_pass_identity(*chain(tmp_path, issuer, issuer.issue(key), key))
    assert identity.pass_type_id == PASS_TYPE_ID
    assert not identity.is_development


def test_refuses_a_certificate_without_uid(tmp_path: Path) -> None:
    issuer, key = Issuer(), ec.generate_private_key(ec.SECP256R1())
    cert_file, key_file, wwdr_file = chain(tmp_path, issuer, issuer.issue(key, uid=None), key)
    with pytest.raises(ValueError, match=r"cert\.pem: the certificate has no UID") as caught:
        load_pass_identity(cert_file, key_file, wwdr_file)
    assert str(cert_file) in str(caught.value)


def test_refuses_a_certificate_without_ou(tmp_path: Path) -> None:
    issuer, key = Issuer(), ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match=r"cert\.pem: the certificate has no OU"):
        load_pass_identity(*chain(tmp_path, issuer, issuer.issue(key, ou=None), key))


def test_refuses_a_key_that_does_not_match(tmp_path: Path, dev: DevCerts) -> None:
    stranger = write_pem(tmp_path / "stranger-key.pem", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ValueError, match=r"stranger-key\.pem: this private key does not belong to the certificate"):
        load_pass_identity(dev.cert_file, stranger, dev.wwdr_file)


def test_refuses_a_certificate_another_wwdr_issued(tmp_path: Path, dev: DevCerts) -> None:
    # Another development chain: the same names, another key, so only the signature tells them apart.
    other = generate_dev_certs(tmp_path, pass_type_id=PASS_TYPE_ID, team_id=TEAM_ID, organization="Kartka")
    with pytest.raises(ValueError, match=r"not issued by the WWDR certificate in .*signature does not verify"):
        load_pass_identity(dev.cert_file, dev.key_file, other.wwdr_file)

    stranger = write_pem(tmp_path / "stranger-wwdr.pem", Issuer("Someone Else CA").cert)
    with pytest.raises(ValueError, match=r"not issued by the WWDR certificate in .*stranger-wwdr\.pem.*issuer name"):
        load_pass_identity(dev.cert_file, dev.key_file, stranger)


def test_refuses_an_expired_or_not_yet_valid_certificate(tmp_path: Path) -> None:
    issuer, key = Issuer(), ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    expired = issuer.issue(key, not_before=now - timedelta(days=400), not_after=now - timedelta(days=1))
    with pytest.raises(ValueError, match=r"cert\.pem: the Pass Type ID certificate expired on "):
        load_pass_identity(*chain(tmp_path, issuer, expired, key))
    early = issuer.issue(key, not_before=now + timedelta(days=1), not_after=now + timedelta(days=2))
    with pytest.raises(ValueError, match="is not valid before"):
        load_pass_identity(*chain(tmp_path, issuer, early, key))


def test_refuses_a_certificate_without_the_pass_type_extension(tmp_path: Path) -> None:
    issuer, key = Issuer(), ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match=r"lacks Apple's pass type extension \(1\.2\.840\.113635\.100\.6\.1\.16\)"):
        load_pass_identity(*chain(tmp_path, issuer, issuer.issue(key, marker=None), key))
    mismatched = issuer.issue(key, marker=b"\x0c\x0dpass.by.other")
    with pytest.raises(ValueError, match=r"the pass type extension names 'pass\.by\.other'"):
        load_pass_identity(*chain(tmp_path, issuer, mismatched, key))


def test_refuses_unreadable_files_naming_them(tmp_path: Path, dev: DevCerts) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=r"missing\.pem: cannot read the Pass Type ID certificate"):
        load_pass_identity(missing, dev.key_file, dev.wwdr_file)
    not_a_cert = tmp_path / "junk.pem"
    not_a_cert.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=r"junk\.pem: the WWDR certificate is not a PEM or DER X.509 certificate"):
        load_pass_identity(dev.cert_file, dev.key_file, not_a_cert)
    with pytest.raises(ValueError, match=r"pass\.pem: not a readable PEM or DER private key"):
        load_pass_identity(dev.cert_file, dev.cert_file, dev.wwdr_file)


def test_encrypted_key_needs_its_password(tmp_path: Path, dev: DevCerts) -> None:
    key = serialization.load_pem_private_key(dev.key_file.read_bytes(), None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    identity = load_pass_identity(dev.cert_file, encrypted, dev.wwdr_file, key_password="correct horse")
    assert identity.pass_type_id == PASS_TYPE_ID
    with pytest.raises(ValueError, match=r"encrypted-key\.pem: the private key is encrypted; give its password"):
        load_pass_identity(dev.cert_file, encrypted, dev.wwdr_file)
    with pytest.raises(ValueError, match="or the password is wrong"):
        load_pass_identity(dev.cert_file, encrypted, dev.wwdr_file, key_password="wrong")
