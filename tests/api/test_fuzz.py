"""The OpenAPI document is the contract: a property-based fuzzer (schemathesis) sends generated requests
to every operation with each kind of credential, and every answer must be one the document declares
(status, content type, headers, body schema; a Location, ETag, Last-Modified, Retry-After or
Idempotent-Replayed it sends must be declared too), and never a 5xx.

The app under test is a second instance of the real app (its own pool, its own event loop, driven by
schemathesis's ASGI transport, the webhooks' secrets configured); the credentials are real keys and
tokens in the test database, a real pass's authentication token, Infobip's Basic credentials and a
Twilio signature computed for each generated form.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import msgspec
import pytest
import schemathesis
from litestar import Litestar
from litestar.testing import AsyncTestClient
from schemathesis import checks
from schemathesis.python import asgi

from boot.web import create_app
from kartka.clock import FakeClock
from kartka.db import Pool
from kartka.heartbeat import beat
from kartka.keys import Scope
from kartka.settings import Secret, Settings
from kartka.staff import Role, create_staff
from notifications.providers import TWILIO_WEBHOOK
from notifications.providers.infobip import WEBHOOK_USER
from notifications.providers.twilio import compute_signature
from tests.helpers import PASSWORDS, Keys, sign_in

Client = AsyncTestClient[Litestar]
#: Generated requests per operation with a credential it accepts (deep: the handler runs), and with each
#: other kind (shallow: the refusal, or the ignored header, is the same whatever the body). The sweep
#: stays well under a minute.
EXAMPLES = 3
REFUSED_EXAMPLES = 1
#: The kinds of credential; each is its own test, so the workers share the sweep. ``provider`` is what
#: Apple's Wallet and the message providers send (a pass's token, Infobip's Basic credentials, a Twilio
#: signature of each request), tried only on the operations that take it: every other kind already
#: meets those operations refused.
KINDS = ("none", "pos", "integration", "admin", "staff", "shopper", "provider")
#: Which kinds of credential each security scheme of the document accepts.
ACCEPTS = {
    "ApiKey": {"pos", "integration", "admin"},
    "StaffToken": {"staff"},
    "ShopperToken": {"shopper"},
    "ApplePass": {"provider"},
    "InfobipBasic": {"provider"},
    "TwilioSignature": {"provider"},
}
INFOBIP_SECRET = "fuzz-hook-secret"
TWILIO_TOKEN = "fuzz-twilio-token"
#: Headers that change what a client does: each one sent must be declared for the status it came with.
WATCHED = ("location", "etag", "last-modified", "retry-after", "idempotent-replayed")


def sent_headers_are_declared(ctx: Any, response: Any, case: Any) -> None:
    definition = case.operation.responses.find_by_status_code(response.status_code)
    declared = {name.lower() for name, _ in (definition.headers.items() if definition is not None else [])}
    undeclared = [name for name in WATCHED if name in response.headers and name not in declared]
    if undeclared:
        raise AssertionError(f"{response.status_code} sends {undeclared}, which the document does not declare")


#: What the contract promises: no 5xx, and every status, content type, header and body as documented.
#: (Not "positive data acceptance": a schema cannot say that "0" is no phone number, so a 422 for
#: a schema-valid body is the API being careful, not the document being wrong.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    sent_headers_are_declared,
]


@pytest.fixture
async def credentials(client: Client, pool: Pool, keys: Keys) -> dict[str, dict[str, str]]:
    async with pool.acquire() as conn:
        await create_staff(conn, PASSWORDS, username="fuzz-admin", role=Role.ADMIN, password="fuzz password 123")
    staff = await client.post("/v1/admin/login", json={"username": "fuzz-admin", "password": "fuzz password 123"})
    assert staff.status_code == 200, staff.text
    shopper = await sign_in(client, pool, "+375291112233")
    await beat(pool, "fuzz-worker")  # a live worker, so /ready answers 200 (its 503s are tested elsewhere)
    pkpass = await client.get("/v1/me/card/apple-pass", headers=shopper["headers"])
    assert pkpass.status_code == 200, pkpass.text
    with zipfile.ZipFile(io.BytesIO(pkpass.content)) as archive:
        apple = json.loads(archive.read("pass.json"))
    basic = base64.b64encode(f"{WEBHOOK_USER}:{INFOBIP_SECRET}".encode()).decode()
    return {
        "none": {},
        "pos": await keys.headers(Scope.POS),
        "integration": await keys.headers(Scope.INTEGRATION),
        "admin": await keys.headers(Scope.ADMIN),
        "staff": {"Authorization": f"Bearer {staff.json()['access_token']}"},
        "shopper": shopper["headers"],
        "provider": {
            "pass_type": apple["passTypeIdentifier"],
            "serial": apple["serialNumber"],
            "ApplePass": f"ApplePass {apple['authenticationToken']}",
            "InfobipBasic": f"Basic {basic}",
        },
    }


@pytest.fixture
def fuzzed_settings(settings: Settings) -> Settings:
    """The suite's settings with the webhooks' secrets, so the providers' credentials can be right."""
    return msgspec.structs.replace(
        settings, infobip_webhook_secret=Secret(INFOBIP_SECRET), twilio_auth_token=Secret(TWILIO_TOKEN)
    )


@pytest.fixture
def fuzzed_app(fuzzed_settings: Settings, clock: FakeClock) -> Iterator[Litestar]:
    yield create_app(fuzzed_settings, clock=clock)
    asgi.shutdown_lifespans()  # schemathesis keeps the app's lifespan (and its pool) open until told


@pytest.mark.parametrize("kind", KINDS)
def test_every_operation_answers_as_documented_whoever_calls(
    fuzzed_app: Litestar, fuzzed_settings: Settings, credentials: dict[str, dict[str, str]], kind: str
) -> None:
    """Each operation that takes ``kind``'s credential (and, for ``none``, each open one), explored in
    depth with it: the handler runs."""
    findings: list[str] = []
    twilio_url = fuzzed_settings.public_base + TWILIO_WEBHOOK
    refused: list[str] = []  # operations whose accepted credential was refused every time

    for operation in _operations(fuzzed_app):
        schemes = _schemes(operation)
        # An open operation ignores credentials: it is explored once, without any.
        if not (_accepts(schemes, kind) if schemes else kind == "none"):
            continue
        headers = _provider(credentials[kind], schemes, twilio_url) if kind == "provider" else _same(credentials[kind])
        answered: dict[str, set[int]] = {}
        try:
            _fuzz(operation, {kind: headers}, EXAMPLES, answered)
        except (Exception, BaseExceptionGroup) as exc:  # every finding is collected, then reported together
            findings.append(f"{operation.label} as {kind}: {str(exc).strip()[:1500]}")
        if schemes and (statuses := answered.get(kind, set())) <= {401, 403}:
            refused.append(f"{operation.label}: {sorted(statuses)}")

    assert not findings, f"{len(findings)} findings:\n\n" + "\n\n".join(findings)
    if kind == "provider":  # the credentials the fuzzer makes are right: the handlers run
        assert refused == []


def test_every_operation_refuses_as_documented_whoever_else_calls(
    fuzzed_app: Litestar, credentials: dict[str, dict[str, str]]
) -> None:
    """Each operation called with every kind of credential it does not take (the provider's are tried
    only where they belong), and each open one with every credential it ignores: one generated request
    apiece, sent by each of them, since the refusal (or the ignored header) is the same whatever the
    body."""
    findings: list[str] = []
    for operation in _operations(fuzzed_app):
        schemes = _schemes(operation)
        # An open operation ignores credentials: the kinds other than none send theirs for nothing.
        others = [k for k in KINDS if k != "provider" and (not _accepts(schemes, k) if schemes else k != "none")]
        if not others:
            continue
        answered: dict[str, set[int]] = {}
        try:
            _fuzz(operation, {kind: _same(credentials[kind]) for kind in others}, REFUSED_EXAMPLES, answered)
        except (Exception, BaseExceptionGroup) as exc:
            findings.append(f"{operation.label} {str(exc).strip()[:1500]}")
        if schemes:
            findings.extend(
                f"{operation.label} as {kind}: answered {sorted(statuses)}, not a refusal"
                for kind, statuses in answered.items()
                if not statuses <= {401, 403}
            )
    assert not findings, f"{len(findings)} findings:\n\n" + "\n\n".join(findings)


def _operations(app: Litestar) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) > 40
    return operations


def _schemes(operation: Any) -> set[str]:
    return {name for requirement in operation.definition.raw.get("security", []) for name in requirement}


def _accepts(schemes: set[str], kind: str) -> bool:
    return any(kind in ACCEPTS.get(scheme, set()) for scheme in schemes)


def _same(headers: dict[str, str]) -> Callable[[Any], dict[str, str]]:
    return lambda case: headers


def _provider(credential: dict[str, str], schemes: set[str], twilio_url: str) -> Callable[[Any], dict[str, str]]:
    """The headers Apple's Wallet or a provider would send with ``case`` (the pass's own path, Twilio's
    signature of the URL and the form fields the app will read: blank ones never reach it)."""

    def headers(case: Any) -> dict[str, str]:
        if "ApplePass" in schemes:
            case.path_parameters = (case.path_parameters or {}) | {
                "pass_type": credential["pass_type"],
                "serial": credential["serial"],
            }
            return {"Authorization": credential["ApplePass"]}
        if "InfobipBasic" in schemes:
            return {"Authorization": credential["InfobipBasic"]}
        form = case.body if isinstance(case.body, dict) else {}
        params = {name: str(value) for name, value in form.items() if str(value) != ""}
        return {"X-Twilio-Signature": compute_signature(twilio_url, params, TWILIO_TOKEN)}

    return headers


def _fuzz(
    operation: Any,
    callers: dict[str, Callable[[Any], dict[str, str]]],
    examples: int,
    answered: dict[str, set[int]],
) -> None:
    """``examples`` generated requests to ``operation``, each sent with the headers of every caller; the
    statuses each caller got go into ``answered``."""

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        for kind, headers in callers.items():  # each caller's failure names it (one would stop the rest)
            try:
                status = case.call_and_validate(headers=headers(case), checks=CHECKS).status_code
            except (Exception, BaseExceptionGroup) as exc:
                if len(callers) == 1:
                    raise
                raise AssertionError(f"as {kind}: {exc}") from exc
            answered.setdefault(kind, set()).add(status)

    fuzz()
