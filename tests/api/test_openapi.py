"""The OpenAPI document says exactly what the API accepts: a client generated from it, or a strict
validator, agrees with msgspec's decoder."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.openapi import _subclasses

Client = AsyncTestClient[Litestar]

LINE = {"sku": "milk-1l", "qty": 2, "unit_price": 189, "name": "Молоко 3,2 %", "category": "dairy"}


@pytest.fixture(scope="module")
async def document(client: Client) -> dict[str, Any]:
    return (await client.get("/schema/openapi.json")).json()  # type: ignore[no-any-return]


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


def test_structs_that_refuse_unknown_fields_say_so(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    strict = {
        cls.__name__
        for cls in _subclasses(msgspec.Struct)
        if issubclass(cls, msgspec.Struct) and cls.__struct_config__.forbid_unknown_fields
    }
    documented = strict & set(schemas)
    assert len(documented) > 15
    assert {name for name in documented if schemas[name].get("additionalProperties") is not False} == set()


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
    for operation in ("posIdentify", "posCalculateOrder", "posCommitOrder", "posRefundOrder"):
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
