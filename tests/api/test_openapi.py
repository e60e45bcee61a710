"""The OpenAPI document says exactly what the API accepts: a client generated from it, or a strict
validator, agrees with msgspec's decoder."""

from __future__ import annotations

import enum
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import jsonschema_rs
import msgspec
import pytest
from click.testing import CliRunner
from litestar import Litestar, post
from litestar.cli._utils import LitestarEnv
from litestar.cli.main import litestar_group
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from api import examples
from api.openapi import ContractConfig, _ours
from kartka.db import Pool
from kartka.keys import Scope
from tests.helpers import Keys, sign_in

Client = AsyncTestClient[Litestar]
REF = "#/components/schemas/"

LINE = {"sku": "milk-1l", "qty": 2, "unit_price": 189, "name": "Молоко 3,2 %", "category": "dairy"}


@pytest.fixture(scope="module")
async def document(client: Client) -> dict[str, Any]:
    return (await client.get("/schema/openapi.json")).json()  # type: ignore[no-any-return]


def test_every_reader_gets_the_same_document(app: Litestar, document: dict[str, Any], tmp_path: Path) -> None:
    """The correction is part of how the document is made, not of how one page renders it."""
    assert json.loads(json.dumps(app.openapi_schema.to_schema())) == document
    exported = tmp_path / "openapi.json"
    result = CliRunner().invoke(
        litestar_group,
        ["schema", "openapi", "--output", str(exported)],
        obj=LitestarEnv(app_path="boot.web:create_app", app=app, cwd=tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(exported.read_text()) == document


def _validator(document: dict[str, Any], component: str) -> jsonschema_rs.Draft202012Validator:
    """A strict validator for one component, its references resolved inside the document."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


@pytest.mark.parametrize(
    ("component", "body"),
    [
        ("CalculateInput", {"card": "2000000000008", "lines": [LINE]}),
        ("CommitInput", {"order_id": "A-1", "card": "2000000000008", "lines": [LINE], "redeem_points": 0}),
    ],
)
def test_a_cart_line_is_a_line_and_nothing_else(document: dict[str, Any], component: str, body: dict[str, Any]) -> None:
    validator = _validator(document, component)
    assert validator.is_valid(body), [error.message for error in validator.iter_errors(body)]
    assert validator.is_valid(body | {"lines": [LINE | {"name": None}]})
    assert not validator.is_valid(body | {"lines": [{"anything": "at all"}]})
    assert not validator.is_valid(body | {"lines": [LINE | {"discount": 100}]})
    assert not validator.is_valid(body | {"lines": [LINE | {"name": "x" * 201}]})
    assert not validator.is_valid(body | {"extra": True})


def test_a_returned_line_is_a_returned_line_and_nothing_else(document: dict[str, Any]) -> None:
    for path in ("/v1/pos/orders/{order_id}/refunds", "/v1/integrations/orders/{order_id}/refunds"):
        body_schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body_schema == {"$ref": REF + "RefundInput"}
    validator = _validator(document, "RefundInput")
    body = {"refund_id": "S1-T1-R-1", "lines": [{"sku": "milk-1l", "qty": 1}]}
    assert validator.is_valid(body), [error.message for error in validator.iter_errors(body)]
    assert not validator.is_valid(body | {"lines": [{"anything": "at all"}]})
    assert not validator.is_valid(body | {"lines": [{"sku": "milk-1l", "qty": 1, "unit_price": 189}]})
    assert not validator.is_valid(body | {"lines": [{"sku": "milk-1l", "qty": 0}]})
    assert not validator.is_valid(body | {"lines": []})
    assert not validator.is_valid(body | {"extra": True})


def _bare(node: Any) -> Any:
    """``node`` with each reference naming only the class it points at (Litestar prefixes a class that
    shares its name with another by its module: ``analytics_segments_Segment``; msgspec by its path)."""
    if isinstance(node, dict):
        return {
            key: value.rsplit("/", 1)[-1].replace(".", "_").rsplit("_", 1)[-1] if key == "$ref" else _bare(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_bare(value) for value in node]
    return node


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _types_named(name: str) -> list[type]:
    """Our Structs and enums that Litestar may have named ``name``: by their class name, or by it after
    as much of their module's path as tells them apart."""
    found = []
    for cls in [*_subclasses(msgspec.Struct), *_subclasses(enum.Enum)]:
        if _ours(cls):
            key = [*cls.__module__.split("."), cls.__qualname__]
            if any("_".join(key[start:]) == name for start in range(len(key))):
                found.append(cls)
    return found


def _msgspecs(cls: type) -> Any:
    """msgspec's own schema of ``cls``, as JSON reads it."""
    components = msgspec.json.schema_components([cls], ref_template=REF + "{name}")[1]
    return json.loads(msgspec.json.encode(components[cls.__name__]))


def test_each_component_is_msgspecs_own_schema_of_its_type(document: dict[str, Any]) -> None:
    """msgspec's schema is what its decoder enforces; Litestar's drifts from it. No component is left as
    Litestar made it, whatever its name, and a strict Struct says additionalProperties false."""
    uncorrected: list[str] = []
    loose: list[str] = []
    strict = 0
    for name, schema in document["components"]["schemas"].items():
        exact = [cls for cls in _types_named(name) if _bare(_msgspecs(cls)) == _bare(schema)]
        if len(exact) != 1:
            uncorrected.append(name)
        elif issubclass(exact[0], msgspec.Struct) and exact[0].__struct_config__.forbid_unknown_fields:
            strict += 1
            if schema.get("additionalProperties") is not False:
                loose.append(name)
    assert uncorrected == []
    assert loose == []
    assert strict > 15


def test_every_component_is_used(document: dict[str, Any]) -> None:
    """No component is left behind by the correction (an orphan is a type the document does not use)."""

    def references(node: Any) -> set[str]:
        if isinstance(node, dict):
            own = {node["$ref"].removeprefix(REF)} if isinstance(node.get("$ref"), str) else set()
            return own.union(*(references(value) for value in node.values()))
        if isinstance(node, list):
            return set().union(*(references(value) for value in node))
        return set()

    schemas = document["components"]["schemas"]
    reached: set[str] = set()
    todo = references(document["paths"])
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo |= references(schemas[name])
    assert set(schemas) - reached == set()


def test_no_schema_in_the_document_accepts_anything_in_place_of_an_object(document: dict[str, Any]) -> None:
    def empty_branches(node: Any) -> int:
        if isinstance(node, dict):
            own = sum(1 for key in ("oneOf", "anyOf") for branch in node.get(key, []) if branch == {})
            return own + sum(empty_branches(value) for value in node.values())
        if isinstance(node, list):
            return sum(empty_branches(value) for value in node)
        return 0

    assert empty_branches(document) == 0


def test_the_till_endpoints_show_realistic_examples_that_match_their_schemas(document: dict[str, Any]) -> None:
    checked: list[str] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            media = [("request", operation.get("requestBody", {}).get("content", {}))]
            media += [(status, answer.get("content", {})) for status, answer in operation["responses"].items()]
            for where, content in media:
                for body in content.values():
                    for name, example in (body.get("examples") or {}).items():
                        schema = {"components": document["components"]} | body["schema"]
                        validator = jsonschema_rs.Draft202012Validator(schema)
                        errors = [error.message for error in validator.iter_errors(example["value"])]
                        assert not errors, (method, path, where, name, errors)
                        checked.append(f"{operation['operationId']} {where}")
    for operation in (
        "posIdentify",
        "posCalculateOrder",
        "posCommitOrder",
        "posRefundOrder",
        "integrationsCommitOrder",
    ):
        assert f"{operation} request" in checked
        assert any(entry.startswith(operation) and not entry.endswith("request") for entry in checked), operation


def test_every_error_is_documented_as_problem_json(document: dict[str, Any]) -> None:
    errors = [
        (method, path, status, sorted(answer.get("content", {})))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict)
        for status, answer in operation["responses"].items()
        if status[0] in "45"
    ]
    assert len(errors) > 100
    assert [error for error in errors if error[3] != ["application/problem+json"]] == []
    assert all(
        "Retry-After" in operation["responses"]["503"]["headers"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "503" in operation["responses"]
    )


def test_every_example_is_of_an_operation_the_document_has(document: dict[str, Any]) -> None:
    operations = {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
    }
    for operation_id, samples in examples.BY_OPERATION.items():
        assert operation_id in operations, operation_id
        for status in samples:
            place = operations[operation_id].get("requestBody") if status == "request" else None
            place = place or operations[operation_id]["responses"].get(status)
            assert place is not None, (operation_id, status)
            assert any("examples" in body for body in place["content"].values()), (operation_id, status)


#: The sign-ins: their 401 refuses the code, password or refresh token the body trades for a token (the
#: caller has no credential yet, so no security scheme fits).
SIGN_INS = {"authSignIn", "authRefresh", "adminLogin"}


def test_every_operation_that_can_answer_401_says_which_credential(document: dict[str, Any]) -> None:
    schemes = set(document["components"]["securitySchemes"])
    open_401 = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "401" in operation["responses"]:
                if operation["operationId"] in SIGN_INS:
                    assert "requestBody" in operation
                    continue
                named = {name for requirement in operation.get("security", []) for name in requirement}
                if not named or not named <= schemes:
                    open_401.append(f"{method.upper()} {path}")
    assert open_401 == []


def test_every_webhook_documents_the_body_it_reads(document: dict[str, Any]) -> None:
    for path, media in [
        ("/v1/webhooks/infobip", "application/json"),
        ("/v1/webhooks/twilio", "application/x-www-form-urlencoded"),
        ("/v1/webhooks/google-wallet", "application/json"),
    ]:
        operation = document["paths"][path]["post"]
        assert list(operation["requestBody"]["content"]) == [media], path
        assert {"400", "413", "422"} <= set(operation["responses"]), path


#: Headers whose presence changes what a client does; each one the API sends must be in the document.
WATCHED = ("Location", "ETag", "Last-Modified", "Retry-After", "Idempotent-Replayed")


def _operation_of(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, item in document["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) and method.lower() in item:
            return item[method.lower()]  # type: ignore[no-any-return]
    raise AssertionError(f"{method} {path} is not in the document")


async def test_every_header_the_api_sends_is_documented(
    client: Client, pool: Pool, keys: Keys, document: dict[str, Any]
) -> None:
    """Exercise each operation that sends one of ``WATCHED`` and compare its answer with the document."""
    admin, pos = await keys.headers(Scope.ADMIN), await keys.headers(Scope.POS)
    shopper = await sign_in(client, pool, "+375291234567")
    card = (await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)).json()["card"]
    order = {"order_id": "H-1", "card": card["number"], "lines": [LINE]}
    pkpass = await client.get("/v1/me/card/apple-pass", headers=shopper["headers"])
    with zipfile.ZipFile(io.BytesIO(pkpass.content)) as archive:
        apple = json.loads(archive.read("pass.json"))
    pass_url = f"/passkit/v1/passes/{apple['passTypeIdentifier']}/{apple['serialNumber']}"
    apple_auth = {"Authorization": f"ApplePass {apple['authenticationToken']}"}
    benefit = {"type": "bundle", "trigger": {"categories": ["coffee"]}, "target": {"categories": ["pastry"]}}
    promotion = {"id": "headers", "title": {"en": "Headers"}, "benefit": benefit | {"percent_bp": 3000}}

    answers = [  # the pass first: the order changes it
        latest := await client.get(pass_url, headers=apple_auth),
        await client.get(pass_url, headers=apple_auth | {"If-Modified-Since": latest.headers["last-modified"]}),
        await client.head(pass_url, headers=apple_auth | {"If-Modified-Since": latest.headers["last-modified"]}),
        await client.post("/v1/admin/promotions", json=promotion, headers=admin),
        await client.post("/v1/pos/orders", json=order, headers=pos | {"Idempotency-Key": "H-1"}),
        await client.post("/v1/pos/orders", json=order, headers=pos | {"Idempotency-Key": "H-1"}),
        barcode := await client.get("/v1/me/card/barcode", headers=shopper["headers"]),
        await client.get(
            "/v1/me/card/barcode", headers=shopper["headers"] | {"If-None-Match": barcode.headers["etag"]}
        ),
    ]
    seen: set[str] = set()
    undeclared: list[str] = []
    for answer in answers:
        operation = _operation_of(document, answer.request.method, answer.request.url.path)
        declared = set(operation["responses"][str(answer.status_code)].get("headers", {}))
        for header in WATCHED:
            if header in answer.headers:
                seen.add(header)
                if header not in declared:
                    undeclared.append(f"{operation['operationId']} {answer.status_code} {header}")
    assert [answer.status_code for answer in answers] == [200, 304, 304, 201, 201, 201, 200, 304]
    assert undeclared == []
    assert seen == set(WATCHED) - {"Retry-After"}  # the fuzzer meets Retry-After (429, 503)


#: Two Structs of one name in two of our packages (api.openapi corrects our packages' types).
_StrictThing = msgspec.defstruct(
    "Thing", [("count", Annotated[int, msgspec.Meta(ge=1)])], module="api.one", forbid_unknown_fields=True
)
_LooseThing = msgspec.defstruct(
    "Thing",
    [("items", tuple[_StrictThing, ...], ())],  # type: ignore[valid-type]
    module="analytics.two",
)


def test_two_structs_of_one_name_are_each_corrected() -> None:
    """Litestar tells them apart by module (api_one_Thing, analytics_two_Thing); the correction by the
    type itself."""

    @post("/strict", sync_to_thread=False)
    def strict(data: JSONBody[_StrictThing]) -> None:  # type: ignore[valid-type]
        return None

    @post("/loose", sync_to_thread=False)
    def loose(data: JSONBody[_LooseThing]) -> None:  # type: ignore[valid-type]
        return None

    config = ContractConfig(title="t", version="1")
    app = Litestar([strict, loose], openapi_config=config, plugins=[config.exact])
    schemas = json.loads(json.dumps(app.openapi_schema.to_schema()["components"]["schemas"]))
    assert set(schemas) == {"api_one_Thing", "analytics_two_Thing"}
    assert schemas["api_one_Thing"]["additionalProperties"] is False
    assert schemas["api_one_Thing"]["properties"]["count"] == {"type": "integer", "minimum": 1}
    assert "additionalProperties" not in schemas["analytics_two_Thing"]
    assert schemas["analytics_two_Thing"]["properties"]["items"] == {
        "type": "array",
        "items": {"$ref": REF + "api_one_Thing"},
        "default": [],
    }


def test_every_component_has_its_class_name(document: dict[str, Any]) -> None:
    """Two of our types of one name would be documented under their modules' names
    (``analytics_segments_Segment``): a client deserves a name of their own for each."""
    assert [name for name in document["components"]["schemas"] if "_" in name] == []
