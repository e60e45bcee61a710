"""The Apple ``.pkpass``: checked the way Apple's validator checks one (files, manifest, a CMS signature
that chains root -> WWDR -> pass certificate, identifiers bound to the certificate), plus what the
shopper sees: fields, change messages, both languages, exact numbers."""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import re
import subprocess
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from PIL import Image

from wallet.models import BalanceView, Expiring, NextTier, TierView
from wallet.passes.apple import ApplePassData, PassLocation, build_pkpass
from wallet.passes.devcerts import DevCerts, generate_dev_certs
from wallet.passes.identity import PassIdentity, load_pass_identity

PASS_TYPE_ID = "pass.by.kartka.loyalty"
TEAM_ID = "KARTKADEV1"
FILES = [
    "pass.json",
    "icon.png",
    "icon@2x.png",
    "icon@3x.png",
    "logo.png",
    "logo@2x.png",
    "logo@3x.png",
    "ru.lproj/pass.strings",
    "en.lproj/pass.strings",
    "manifest.json",
    "signature",
]
IMAGE_SIZES = {
    "icon.png": (29, 29),
    "icon@2x.png": (58, 58),
    "icon@3x.png": (87, 87),
    "logo.png": (160, 50),
    "logo@2x.png": (320, 100),
    "logo@3x.png": (480, 150),
}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return generate_dev_certs(
        tmp_path_factory.mktemp("dev-certs"), pass_type_id=PASS_TYPE_ID, team_id=TEAM_ID, organization="Kartka"
    )


@pytest.fixture(scope="module")
def identity(dev: DevCerts) -> PassIdentity:
    return load_pass_identity(dev.cert_file, dev.key_file, dev.wwdr_file)


@pytest.fixture(scope="module")
def pkpass(identity: PassIdentity) -> bytes:
    return build_pkpass(make_data(), identity)


def make_data(**overrides: Any) -> ApplePassData:
    values: dict[str, Any] = {
        "serial_number": "c7b1b2a0-0000-4000-8000-000000000001",
        "authentication_token": "s3cr3t-t0ken-0f-32-characters!!!",
        "web_service_url": "https://kartka.example/passkit",
        "card_number": "2000000000015",
        "holder_name": "Анна",
        "balance": BalanceView(
            available=12550,
            pending=1234,
            next_available_at=datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
            expiring_soon=Expiring(points=500, at=datetime(2026, 3, 10, 21, 0, tzinfo=UTC)),
        ),
        "tier": TierView(
            code="standart",
            name="Standart",
            rate=500,
            spend_365d=38_000,
            next=NextTier(code="gold", name="Gold", threshold=50_000),
            to_next=12_050,
        ),
        "card_page_url": "https://kartka.example/c/AbC123",
        "locations": (PassLocation(Decimal("53.9045"), Decimal("27.5615"), "Kartka на Немиге"),),
    }
    values.update(overrides)
    return ApplePassData(**values)


def unpack(pkpass: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_out(files: dict[str, bytes], directory: Path) -> Path:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return directory


def manifest_problems(files: dict[str, bytes]) -> list[str]:
    """What Apple's validator says about the manifest: every file but manifest.json and signature is
    listed with its SHA-1, and nothing else is."""
    manifest: dict[str, str] = json.loads(files["manifest.json"])
    problems = []
    for name, content in files.items():
        if name in ("manifest.json", "signature"):
            continue
        if name not in manifest:
            problems.append(f"{name} is not in the manifest")
        elif manifest[name] != hashlib.sha1(content, usedforsecurity=False).hexdigest():
            problems.append(f"{name} does not match its hash")
    problems += [f"{name} is listed but missing" for name in manifest if name not in files]
    return problems


def openssl_verify(directory: Path, ca_file: Path) -> subprocess.CompletedProcess[str]:
    """Verify the detached signature over manifest.json up to ``ca_file`` alone: no system trust store
    and no other certificates, so the WWDR intermediate must come from inside the signature."""
    return subprocess.run(
        [
            "openssl", "cms", "-verify", "-binary", "-inform", "DER",
            "-in", str(directory / "signature"), "-content", str(directory / "manifest.json"),
            "-CAfile", str(ca_file), "-no-CApath", "-no-CAstore",
            "-purpose", "any",  # the leaf is a clientAuth + Passbook certificate, not an S/MIME one
            "-out", "/dev/null",
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


def parse_strings(content: bytes) -> dict[str, str]:
    """A strict reader of the ``"key" = "value";`` format: the whole file must be such lines."""
    assert content.startswith(codecs.BOM_UTF16_LE)
    text = content[2:].decode("utf-16-le")
    token = r'"((?:[^"\\]|\\.)*)"'
    entries: dict[str, str] = {}
    position = 0
    for match in re.finditer(rf"\s*{token}\s*=\s*{token}\s*;\s*", text):
        assert match.start() == position, f"unparsed text at {position}: {text[position : position + 40]!r}"
        key, value = (_unescape(group) for group in match.groups())
        assert key not in entries, f"duplicate key {key}"
        entries[key] = value
        position = match.end()
    assert position == len(text), f"unparsed text at {position}: {text[position : position + 40]!r}"
    return entries


def _unescape(text: str) -> str:
    simple = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
    return re.sub(
        r"\\(U[0-9A-Fa-f]{4}|.)",
        lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1).startswith("U") else simple[m.group(1)],
        text,
    )


def fields(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    store_card = document["storeCard"]
    groups = ("primaryFields", "secondaryFields", "auxiliaryFields", "backFields")
    found = [field for group in groups for field in store_card[group]]
    keys = [field["key"] for field in found]
    assert len(keys) == len(set(keys)), "field keys must be unique across the pass"
    return {field["key"]: field for field in found}


def referenced_keys(document: dict[str, Any]) -> set[str]:
    """The strings pass.json looks up in pass.strings: labels, change messages, the description, the note."""
    keys = {document["description"]}
    for field in fields(document).values():
        keys.add(field["label"])
        if "changeMessage" in field:
            keys.add(field["changeMessage"])
    keys.add(fields(document)["how"]["value"])
    return keys


# -- the package, as Apple's validator sees it --------------------------------------------------------------


def test_exact_files_in_a_fixed_order(pkpass: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        assert archive.namelist() == FILES
        assert archive.testzip() is None
        for info in archive.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)


def test_manifest_hashes_every_file_but_itself_and_the_signature(pkpass: bytes) -> None:
    files = unpack(pkpass)
    manifest = json.loads(files["manifest.json"])
    assert set(manifest) == set(FILES) - {"manifest.json", "signature"}
    assert all(re.fullmatch(r"[0-9a-f]{40}", digest) for digest in manifest.values())
    assert manifest_problems(files) == []


def test_signature_verifies_up_to_the_root_with_the_wwdr_from_inside(
    pkpass: bytes, dev: DevCerts, tmp_path: Path
) -> None:
    directory = write_out(unpack(pkpass), tmp_path)
    result = openssl_verify(directory, dev.ca_file)
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr

    # The root alone is trusted; the WWDR intermediate travels inside the signature, next to the signer.
    certificates = pkcs7.load_der_pkcs7_certificates((directory / "signature").read_bytes())
    names = {c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in certificates}
    assert names == {"Kartka Development WWDR CA", f"Pass Type ID: {PASS_TYPE_ID}"}

    # Another root (another development chain, same names) does not verify it: the chain really is checked.
    stranger = generate_dev_certs(tmp_path / "other", pass_type_id=PASS_TYPE_ID, team_id=TEAM_ID, organization="K")
    refused = openssl_verify(directory, stranger.ca_file)
    assert refused.returncode != 0
    assert "unable to get local issuer certificate" in refused.stderr


def test_signature_is_detached_with_a_signing_time(pkpass: bytes, tmp_path: Path) -> None:
    directory = write_out(unpack(pkpass), tmp_path)
    printed = subprocess.run(
        ["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(directory / "signature")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "eContent: <ABSENT>" in printed  # detached: manifest.json is not inside
    assert "contentType (1.2.840.113549.1.9.3)" in printed
    assert "messageDigest (1.2.840.113549.1.9.4)" in printed
    match = re.search(r"signingTime \(1\.2\.840\.113549\.1\.9\.5\)\s+set:\s+UTCTIME:(.+? GMT)", printed)
    assert match, printed
    signed_at = datetime.strptime(" ".join(match.group(1).split()), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - signed_at) < timedelta(minutes=10)
    assert "sha256" in printed.lower()


def test_signer_is_the_certificate_pass_json_claims(pkpass: bytes, identity: PassIdentity) -> None:
    files = unpack(pkpass)
    document = json.loads(files["pass.json"])
    certificates = pkcs7.load_der_pkcs7_certificates(files["signature"])
    signers = [c for c in certificates if c.subject.get_attributes_for_oid(NameOID.USER_ID)]
    assert len(signers) == 1
    signer = signers[0]
    assert signer == identity.certificate
    assert signer.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == document["passTypeIdentifier"]
    assert (
        signer.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (document["teamIdentifier"])
    )
    assert document["passTypeIdentifier"] == PASS_TYPE_ID
    assert document["teamIdentifier"] == TEAM_ID


def test_tampering_is_caught(pkpass: bytes, dev: DevCerts, tmp_path: Path) -> None:
    files = unpack(pkpass)
    tampered = {**files, "pass.json": files["pass.json"].replace(b"125.5", b"999.5")}
    assert manifest_problems(tampered) == ["pass.json does not match its hash"]

    extra = {**files, "strip.png": files["logo.png"]}
    assert manifest_problems(extra) == ["strip.png is not in the manifest"]

    manifest = json.loads(files["manifest.json"])
    manifest["pass.json"] = hashlib.sha1(tampered["pass.json"], usedforsecurity=False).hexdigest()
    forged = {**tampered, "manifest.json": json.dumps(manifest).encode()}
    assert manifest_problems(forged) == []  # a consistent manifest ...
    result = openssl_verify(write_out(forged, tmp_path), dev.ca_file)
    assert result.returncode != 0  # ... that the signature no longer covers
    assert "content verify error" in result.stderr


def test_images_have_the_documented_sizes(pkpass: bytes) -> None:
    files = unpack(pkpass)
    for name, size in IMAGE_SIZES.items():
        with Image.open(io.BytesIO(files[name])) as image:
            assert image.format == "PNG"
            assert image.size == size, name
            assert image.mode in ("RGBA", "P", "LA")  # transparent background
        assert len(files[name]) < 8_000, f"{name} should stay small"


def test_two_builds_differ_only_in_the_signature(identity: PassIdentity) -> None:
    first, second = build_pkpass(make_data(), identity), build_pkpass(make_data(), identity)
    a, b = unpack(first), unpack(second)
    assert a.keys() == b.keys()
    assert {n: c for n, c in a.items() if n != "signature"} == {n: c for n, c in b.items() if n != "signature"}
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        signature_starts = archive.getinfo("signature").header_offset
    assert first[:signature_starts] == second[:signature_starts]  # byte for byte up to the signature


def test_expired_identity_is_refused(identity: PassIdentity) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")])
    expired = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=10))
        .not_valid_after(now - timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    stale = msgspec.structs.replace(identity, certificate=expired, private_key=key)
    with pytest.raises(ValueError, match="the Pass Type ID certificate expired on"):
        build_pkpass(make_data(), stale)


# -- pass.json --------------------------------------------------------------------------------------------------


def test_pass_json_top_level(pkpass: bytes) -> None:
    document = json.loads(unpack(pkpass)["pass.json"])
    assert document["formatVersion"] == 1
    assert document["serialNumber"] == "c7b1b2a0-0000-4000-8000-000000000001"
    assert document["authenticationToken"] == "s3cr3t-t0ken-0f-32-characters!!!"
    assert document["webServiceURL"] == "https://kartka.example/passkit"
    assert document["organizationName"] == "Kartka"
    assert document["sharingProhibited"] is True
    assert "voided" not in document
    assert document["backgroundColor"] == "rgb(16, 94, 70)"
    assert document["foregroundColor"] == "rgb(255, 255, 255)"
    assert re.fullmatch(r"rgb\(\d{1,3}, \d{1,3}, \d{1,3}\)", document["labelColor"])
    assert document["locations"] == [{"latitude": 53.9045, "longitude": 27.5615, "relevantText": "Kartka на Немиге"}]
    qr = {
        "format": "PKBarcodeFormatQR",
        "message": "2000000000015",
        "messageEncoding": "iso-8859-1",
        "altText": "2000000000015",
    }
    assert document["barcodes"] == [qr]
    assert document["barcode"] == qr


def test_fields_carry_balance_tier_and_progress(pkpass: bytes) -> None:
    document = json.loads(unpack(pkpass)["pass.json"], parse_float=Decimal)
    store_card = document["storeCard"]
    assert [f["key"] for f in store_card["primaryFields"]] == ["balance"]
    assert [f["key"] for f in store_card["secondaryFields"]] == ["tier"]
    assert [f["key"] for f in store_card["auxiliaryFields"]] == ["progress", "rate"]
    by_key = fields(document)

    balance = by_key["balance"]
    assert balance["value"] == Decimal("125.5")
    assert balance["numberStyle"] == "PKNumberStyleDecimal"
    assert balance["changeMessage"] == "change.balance: %@"
    tier = by_key["tier"]
    assert tier["value"] == "Standart"
    assert tier["changeMessage"] == "change.tier: %@"
    assert by_key["progress"]["value"] == Decimal("120.5")
    assert by_key["progress"]["currencyCode"] == "BYN"
    assert by_key["rate"]["value"] == Decimal("0.05")
    assert by_key["rate"]["numberStyle"] == "PKNumberStylePercent"

    back = [f["key"] for f in store_card["backFields"]]
    assert back == ["card_number", "holder", "pending", "pending_at", "expiring", "expiring_at", "how", "card_page"]
    assert by_key["card_number"]["value"] == "2000000000015"
    assert by_key["card_number"]["dataDetectorTypes"] == []  # not a phone number
    assert by_key["pending"]["value"] == Decimal("12.34")
    assert by_key["expiring"]["value"] == 5
    assert by_key["card_page"]["value"] == "https://kartka.example/c/AbC123"
    assert by_key["card_page"]["dataDetectorTypes"] == ["PKDataDetectorTypeLink"]


def test_dates_are_in_the_program_time_zone(pkpass: bytes) -> None:
    by_key = fields(json.loads(unpack(pkpass)["pass.json"]))
    pending_at, expiring_at = by_key["pending_at"], by_key["expiring_at"]
    assert pending_at["value"] == "2026-03-03T12:00:00+03:00"  # 09:00 UTC in Minsk
    assert pending_at["dateStyle"] == "PKDateStyleMedium"
    assert pending_at["timeStyle"] == "PKDateStyleShort"
    assert pending_at["ignoresTimeZone"] is True
    assert expiring_at["value"] == "2026-03-11T00:00:00+03:00"
    assert expiring_at["dateStyle"] == "PKDateStyleMedium"
    assert expiring_at["timeStyle"] == "PKDateStyleNone"


def test_numbers_are_exact_decimals_never_floats(identity: PassIdentity) -> None:
    data = make_data(
        balance=BalanceView(
            available=12550,
            pending=100,
            next_available_at=None,
            expiring_soon=Expiring(points=123456789, at=datetime(2026, 4, 1, tzinfo=UTC)),
        ),
        tier=TierView(code="gold", name="Gold", rate=1050, spend_365d=60_000, next=None, to_next=None),
    )
    raw = unpack(build_pkpass(data, identity))["pass.json"].decode()
    # The raw text, since a JSON reader would hand back floats: exactly the decimal strings, no exponents.
    numbers = re.findall(r'"value":(-?[0-9][0-9.eE+-]*)', raw)
    assert numbers == ["125.5", "0.105", "1", "1234567.89"]
    assert '"latitude":53.9045' in raw
    assert not re.search(r"[0-9][eE][+-]?[0-9]", raw)

    def no_floats(text: str) -> Decimal:
        assert re.fullmatch(r"-?[0-9]+\.[0-9]{1,4}", text), text
        return Decimal(text)

    json.loads(raw, parse_float=no_floats)


def test_a_negative_balance_stays_exact(identity: PassIdentity) -> None:
    data = make_data(
        balance=BalanceView(
            available=-525, pending=0, next_available_at=None, expiring_soon=Expiring(points=0, at=None)
        )
    )
    raw = unpack(build_pkpass(data, identity))["pass.json"].decode()
    assert '"key":"balance","label":"label.balance","value":-5.25,' in raw


def test_pending_and_next_tier_are_left_out_when_there_are_none(identity: PassIdentity) -> None:
    data = make_data(
        balance=BalanceView(available=0, pending=0, next_available_at=None, expiring_soon=Expiring(points=0, at=None)),
        tier=TierView(code="platinum", name="Platinum", rate=1500, spend_365d=200_000, next=None, to_next=None),
        holder_name=None,
        card_page_url=None,
        locations=(),
    )
    files = unpack(build_pkpass(data, identity))
    document = json.loads(files["pass.json"])
    assert list(fields(document)) == ["balance", "tier", "rate", "card_number", "how"]
    assert fields(document)["balance"]["value"] == 0
    assert "locations" not in document
    assert "label.progress" not in parse_strings(files["ru.lproj/pass.strings"])


def test_voided(identity: PassIdentity) -> None:
    document = json.loads(unpack(build_pkpass(make_data(voided=True), identity))["pass.json"])
    assert document["voided"] is True


def test_code128_setting(identity: PassIdentity) -> None:
    document = json.loads(unpack(build_pkpass(make_data(barcode="code128"), identity))["pass.json"])
    assert document["barcodes"] == [
        {
            "format": "PKBarcodeFormatCode128",
            "message": "2000000000015",
            "messageEncoding": "iso-8859-1",
            "altText": "2000000000015",
        }
    ]
    assert document["barcode"]["format"] == "PKBarcodeFormatQR"  # the legacy key knows no Code128


def test_points_as_text_in_the_shoppers_language(identity: PassIdentity) -> None:
    data = make_data(
        number_locale="ru",
        balance=BalanceView(
            available=123450, pending=0, next_available_at=None, expiring_soon=Expiring(points=0, at=None)
        ),
    )
    balance = fields(json.loads(unpack(build_pkpass(data, identity))["pass.json"]))["balance"]
    assert balance["value"] == "1\u00a0234,50"  # as the SMS writes it
    assert "numberStyle" not in balance
    assert balance["changeMessage"] == "change.balance: %@"


# -- the strings files ----------------------------------------------------------------------------------------


def test_strings_parse_and_cover_every_key_in_both_languages(pkpass: bytes) -> None:
    files = unpack(pkpass)
    document = json.loads(files["pass.json"])
    ru, en = parse_strings(files["ru.lproj/pass.strings"]), parse_strings(files["en.lproj/pass.strings"])
    keys = referenced_keys(document)
    assert keys <= ru.keys()
    assert keys <= en.keys()
    assert ru.keys() == en.keys()
    assert ru["label.balance"] == "Баланс"
    assert ru["change.balance: %@"] == "Баланс: %@"
    assert en["change.balance: %@"] == "Balance: %@"
    assert "%@" in ru["change.tier: %@"]
    assert "%@" in en["change.tier: %@"]
    assert ru["label.progress"] == "До уровня Gold"
    assert ru["pass.description"] == "Карта лояльности Kartka"
    assert "24 часа" in ru["note.how"]
    assert "6 месяцев" in ru["note.how"]
    assert "70%" in ru["note.how"]
    assert "24 hours" in en["note.how"]
    for key in keys:
        assert ru[key] != en[key], key  # actually translated


def test_strings_escape_what_they_must(identity: PassIdentity) -> None:
    tricky = 'Gold "Plus" \\ new\nline\ttab'
    data = make_data(
        tier=TierView(
            code="standart",
            name="Standart",
            rate=500,
            spend_365d=0,
            next=NextTier(code="gold", name=tricky, threshold=50_000),
            to_next=50_000,
        ),
        organization_name='Kartka "Веска"',
    )
    files = unpack(build_pkpass(data, identity))
    assert parse_strings(files["ru.lproj/pass.strings"])["label.progress"] == f"До уровня {tricky}"
    assert parse_strings(files["en.lproj/pass.strings"])["pass.description"] == 'Kartka "Веска" loyalty card'


def test_a_given_description_is_used_as_it_is(identity: PassIdentity) -> None:
    document = json.loads(unpack(build_pkpass(make_data(description="Карта Веска"), identity))["pass.json"])
    assert document["description"] == "Карта Веска"


# -- input checks --------------------------------------------------------------------------------------------


def test_short_authentication_token_is_refused() -> None:
    with pytest.raises(ValueError, match="authentication_token must be at least 16 characters"):
        make_data(authentication_token="fifteen-chars!!")
    make_data(authentication_token="sixteen-chars!!!")
    with pytest.raises(ValueError, match="printable ASCII"):
        make_data(authentication_token="has a space in it ok")


def test_more_than_ten_locations_is_refused() -> None:
    places = tuple(PassLocation(Decimal("53.9") + Decimal(i) / 100, Decimal("27.56")) for i in range(11))
    make_data(locations=places[:10])
    with pytest.raises(ValueError, match="at most 10 locations, not 11"):
        make_data(locations=places)


def test_bad_input_is_refused_with_reasons() -> None:
    with pytest.raises(ValueError, match="location latitude must be a Decimal"):
        PassLocation(53.9, Decimal("27.5"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"outside -90\.\.90"):
        PassLocation(Decimal("91"), Decimal("27.5"))
    with pytest.raises(ValueError, match="web_service_url must be an absolute http"):
        make_data(web_service_url="kartka.example/passkit")
    with pytest.raises(ValueError, match="unknown timezone"):
        make_data(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="background_color must be three integers"):
        make_data(background_color=(0, 0, 256))
    with pytest.raises(ValueError, match="serial_number"):
        make_data(serial_number="a/b")
    with pytest.raises(ValueError, match="card_number must be ISO-8859-1"):
        make_data(card_number="карта")


def test_naive_dates_are_refused(identity: PassIdentity) -> None:
    data = make_data(
        balance=BalanceView(
            available=0, pending=100, next_available_at=datetime(2026, 3, 3), expiring_soon=Expiring(points=0, at=None)
        )
    )
    with pytest.raises(ValueError, match="has no time zone"):
        build_pkpass(data, identity)
