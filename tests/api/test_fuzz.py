"""The OpenAPI document is the contract: a property-based fuzzer (schemathesis) sends generated requests
to every operation with each kind of credential, and every answer must be one the document declares
(status, content type, headers, body schema), and never a 5xx.

The app under test is a second instance of the real app (its own pool, its own event loop, driven by
schemathesis's ASGI transport); the credentials are real keys and tokens in the test database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
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
from kartka.settings import Settings
from kartka.staff import Role, create_staff
from tests.helpers import PASSWORDS, Keys, sign_in

Client = AsyncTestClient[Litestar]
#: Generated requests per operation with a credential it accepts (deep: the handler runs), and with each
#: other kind (shallow: the refusal, or the ignored header, is the same whatever the body). The sweep
#: stays well under a minute.
EXAMPLES = 3
REFUSED_EXAMPLES = 1
#: The kinds of credential; each is its own test, so the workers share the sweep.
KINDS = ("none", "pos", "integration", "admin", "staff", "shopper")
#: Which kinds of credential each security scheme of the document accepts.
ACCEPTS = {
    "ApiKey": {"pos", "integration", "admin"},
    "StaffToken": {"staff"},
    "ShopperToken": {"shopper"},
}
#: What the contract promises: no 5xx, and every status, content type, header and body as documented.
#: (Not "positive data acceptance": a schema cannot say that "0" is no phone number, so a 422 for
#: a schema-valid body is the API being careful, not the document being wrong.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture
async def credentials(client: Client, pool: Pool, keys: Keys) -> dict[str, dict[str, str]]:
    async with pool.acquire() as conn:
        await create_staff(conn, PASSWORDS, username="fuzz-admin", role=Role.ADMIN, password="fuzz password 123")
    staff = await client.post("/v1/admin/login", json={"username": "fuzz-admin", "password": "fuzz password 123"})
    assert staff.status_code == 200, staff.text
    shopper = await sign_in(client, pool, "+375291112233")
    await beat(pool, "fuzz-worker")  # a live worker, so /ready answers 200 (its 503s are tested elsewhere)
    return {
        "none": {},
        "pos": await keys.headers(Scope.POS),
        "integration": await keys.headers(Scope.INTEGRATION),
        "admin": await keys.headers(Scope.ADMIN),
        "staff": {"Authorization": f"Bearer {staff.json()['access_token']}"},
        "shopper": shopper["headers"],
    }


@pytest.fixture
def fuzzed_app(settings: Settings, clock: FakeClock) -> Iterator[Litestar]:
    yield create_app(settings, clock=clock)
    asgi.shutdown_lifespans()  # schemathesis keeps the app's lifespan (and its pool) open until told


@pytest.mark.parametrize("kind", KINDS)
def test_every_operation_answers_as_documented_whoever_calls(
    fuzzed_app: Litestar, credentials: dict[str, dict[str, str]], kind: str
) -> None:
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", fuzzed_app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) > 40
    findings: list[str] = []
    headers = credentials[kind]

    for operation in operations:
        schemes = {name for requirement in operation.definition.raw.get("security", []) for name in requirement}
        # An open operation ignores credentials: it is explored once, without any.
        accepted = any(kind in ACCEPTS.get(scheme, set()) for scheme in schemes) if schemes else kind == "none"
        try:
            _fuzz(operation, headers, EXAMPLES if accepted else REFUSED_EXAMPLES)
        except (Exception, BaseExceptionGroup) as exc:  # every finding is collected, then reported together
            findings.append(f"{operation.label} as {kind}: {str(exc).strip()[:1500]}")

    assert not findings, f"{len(findings)} findings:\n\n" + "\n\n".join(findings)


def _fuzz(operation: Any, headers: dict[str, str], examples: int) -> None:
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
        case.call_and_validate(headers=headers, checks=CHECKS)

    fuzz()
