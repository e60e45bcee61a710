"""The OpenAPI document as the contract, and the pages that show it (offline: no CDN).

Litestar derives the document from the handlers' types, but its schemas for msgspec Structs drift from
what msgspec actually accepts: a variadic tuple becomes ``oneOf: [Item, {}]`` (any object passes), a
struct that forbids unknown fields does not say ``additionalProperties: false``, and constraints of an
optional field land beside the ``oneOf`` instead of on the string. msgspec's own JSON Schema is, by
construction, exactly what its decoder enforces, so every component that is one of our Structs (or
enums) is taken from ``msgspec.json.schema_components`` instead, under the name Litestar gave it; which
component is which type is known from the schema Litestar registered for it (:class:`ExactSchemas`),
never guessed from a name (two Structs may share one). The correction is how the document is made
(:class:`ContractConfig`), so the pages, ``openapi.json``, ``app.openapi_schema.to_schema()`` and
``litestar schema openapi`` all give the same document.

Swagger UI (swagger-ui-dist 5.35.0) and ReDoc (redoc 2.5.4) ship in ``api/assets/apidocs`` (licences
beside them) and are served under ``/schema/assets`` with a content-hash ETag (a revalidation is a 304
through :func:`api.conditional.not_modified`); to upgrade, replace the files and the versions here.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, NamedTuple

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import ETag
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
)
from litestar.openapi.spec import OpenAPI, Operation, Reference, Schema
from litestar.params import PathParameter
from litestar.plugins import OpenAPISchemaPlugin
from litestar.response import File
from litestar.router import Router

from api import examples
from api.conditional import not_modified

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.typing import FieldDefinition

ASSETS_DIR = Path(__file__).parent / "assets" / "apidocs"
ASSETS_PATH = "/schema/assets"
SWAGGER_UI_VERSION = "5.35.0"
REDOC_VERSION = "2.5.4"
#: Our own pass icon, not Litestar's badge from a CDN.
FAVICON = f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon.png'>"
CACHE_CONTROL: Final = "public, max-age=86400"
_MEDIA_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
#: The packages whose types make up the API's bodies.
_OUR_PACKAGES = frozenset({"api", "analytics", "engine", "wallet", "notifications", "kartka"})
_REF_PREFIX = "#/components/schemas/"
_REF = _REF_PREFIX + "{name}"
PROBLEM_JSON = "application/problem+json"
#: Bearer schemes: a valid credential of another kind or scope is refused with 403 (api.auth).
_BEARER_SCHEMES = frozenset({"ApiKey", "StaffToken", "ShopperToken"})
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}
}
_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_VALIDATORS: Final = frozenset({"ETag", "Last-Modified", "Cache-Control", "Expires", "Vary", "Content-Location"})
_SHARED_ANSWERS = {
    "400": "Malformed: not JSON, not UTF-8, or a header that cannot be read",
    "401": "No credential, or one that is unknown, expired or revoked",
    "403": "A valid credential that does not cover this operation",
    "413": "The body is larger than KARTKA_MAX_BODY_BYTES",
    "422": "The request is invalid; `errors` names each field and what is wrong",
    "503": "The database cannot be reached, or another request on the same account got in the way: retry",
}


def _ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] in _OUR_PACKAGES


class ExactSchemas(OpenAPISchemaPlugin):
    """Litestar's schema plugin for our Structs and enums that remembers which component is which type.

    Litestar names a component after its class, and two classes of the same name after their modules
    (``analytics_segments_Segment``); the component is matched to its type by the schema object Litestar
    registered for it, never by a name.
    """

    def __init__(self) -> None:
        self._types: dict[int, tuple[Schema, type]] = {}

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        annotation = field_definition.annotation
        return (
            not field_definition.is_union
            and isinstance(annotation, type)
            and issubclass(annotation, msgspec.Struct | enum.Enum)
            and _ours(annotation)
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        cls: type = field_definition.annotation
        # Litestar makes the schema as it would without us (its Struct plugin, or its enums'): names and
        # references stay Litestar's; the schema itself is replaced by msgspec's in ``corrected``.
        theirs = [
            p
            for p in schema_creator.plugins
            if p is not self and schema_creator.plugin_supports_field(p, field_definition)
        ]
        result: Schema | Reference
        if theirs:
            result = theirs[0].to_openapi_schema(field_definition, schema_creator)
        else:
            result = schema_creator.for_enum_field(field_definition)
        registered = schema_creator.schema_registry.get_schema_for_field_definition(field_definition)
        self._types[id(registered)] = (registered, cls)
        return result  # type: ignore[return-value]  # an enum's is a Reference, as Litestar's own

    def types_of(self, components: dict[str, Schema]) -> dict[str, type]:
        """Each component of ``components`` that is one of our types, with its type."""
        return {
            name: found[1]
            for name, schema in components.items()
            if (found := self._types.get(id(schema))) is not None and found[0] is schema
        }


class _ReadsBody(Operation):
    """An operation whose handler reads its body itself (a webhook checks the signature of the raw bytes
    before anything is decoded): Litestar sees no ``data`` and documents no body, so the class names it."""

    body: ClassVar[tuple[str, type]]


def reads_body(media_type: str, cls: type) -> type[Operation]:
    """The ``operation_class`` of a handler that reads a body of ``media_type`` shaped as ``cls`` itself."""

    class ReadsBody(_ReadsBody):
        body = (media_type, cls)

    return ReadsBody


class _Document(OpenAPI):
    """The document Litestar builds, which turns into the corrected one: whoever asks for it (the served
    ``/schema/openapi.json``, ``app.openapi_schema.to_schema()``, ``litestar schema openapi``) gets the
    same."""

    exact: ExactSchemas

    def to_schema(self) -> dict[str, Any]:
        bodies = {
            operation.operation_id: operation.body
            for item in (self.paths or {}).values()
            for method in _METHODS
            if isinstance(operation := getattr(item, method, None), _ReadsBody) and operation.operation_id
        }
        return corrected(super().to_schema(), self.exact.types_of(self.components.schemas or {}), bodies)


@dataclass
class ContractConfig(OpenAPIConfig):
    """Litestar's OpenAPI configuration whose document is the contract (:func:`corrected`). Its
    ``exact`` plugin goes into the app's ``plugins``."""

    exact: ExactSchemas = field(default_factory=ExactSchemas)

    def to_openapi_schema(self) -> OpenAPI:
        base = super().to_openapi_schema()
        document = _Document(**{f.name: getattr(base, f.name) for f in fields(base)})
        document.exact = self.exact
        return document


def _renamed(node: Any, names: dict[str, str]) -> Any:
    """``node`` with each reference to a component named in ``names`` pointing at its new name."""
    if isinstance(node, dict):
        return {
            key: _REF.format(name=names.get(value.removeprefix(_REF_PREFIX), value.removeprefix(_REF_PREFIX)))
            if key == "$ref" and isinstance(value, str) and value.startswith(_REF_PREFIX)
            else _renamed(value, names)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renamed(value, names) for value in node]
    return node


def corrected(
    document: dict[str, Any], types: dict[str, type], bodies: dict[str, tuple[str, type]] | None = None
) -> dict[str, Any]:
    """``document`` with the component of each of our Structs and enums (``types``: name → type) replaced
    by msgspec's, under the name Litestar gave it; the bodies handlers read themselves (``bodies``:
    operation id → media type and type) declared; and every operation with its shared answers."""
    components = document.get("components", {}).get("schemas", {})
    named = list(types.items())
    read = list((bodies or {}).items())
    refs, exact = msgspec.json.schema_components(
        [*(cls for _, cls in named), *(cls for _, (_, cls) in read)], ref_template=_REF
    )
    names = {ref["$ref"].removeprefix(_REF_PREFIX): name for (name, _), ref in zip(named, refs, strict=False)}
    for theirs in exact:
        # A type msgspec reached that Litestar did not register: its own name must not replace another's.
        if theirs not in names and theirs in components:
            raise ValueError(f"msgspec's component {theirs} would replace another of the same name")
    schemas = components | {names.get(name, name): _renamed(schema, names) for name, schema in exact.items()}
    request_bodies = {
        operation_id: {"required": True, "content": {media: {"schema": _renamed(ref, names)}}}
        for (operation_id, (media, _)), ref in zip(read, refs[len(named) :], strict=True)
    }
    paths = {path: _with_shared_answers(path, item, request_bodies) for path, item in document.get("paths", {}).items()}
    return document | {"paths": paths, "components": document["components"] | {"schemas": schemas}}


def _problem(status: str, description: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": _REF.format(name="Problem")}}},
    }
    if status in ("429", "503"):
        answer["headers"] = _RETRY_AFTER
    return answer


def _validators(answer: dict[str, Any]) -> dict[str, Any]:
    """The headers of ``answer`` a 304 in its place must send too."""
    return {name: header for name, header in answer.get("headers", {}).items() if name in _VALIDATORS}


def _with_example(body: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    """A request body or answer whose JSON content shows ``example`` (instead of generated ones)."""
    content = {
        media: described | {"examples": {"example": example}} if media.endswith("json") else described
        for media, described in body.get("content", {}).items()
    }
    return body | {"content": content}


def _shared_statuses(path: str, operation: dict[str, Any]) -> set[str]:
    """The statuses every operation like this one can answer, whatever its handler says."""
    shared = {"503"} if path != "/health" else set()
    if "requestBody" in operation:
        shared |= {"400", "413", "422"}
    schemes = {name for requirement in operation.get("security", []) for name in requirement}
    if schemes:
        shared.add("401")
    if schemes & _BEARER_SCHEMES:
        shared.add("403")
    return shared


def _with_shared_answers(path: str, item: dict[str, Any], bodies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each operation of ``item`` with the body its handler reads itself (``bodies``), the answers every
    operation of its kind can give, every error as problem+json, a 304 with the validators of the 200 it
    stands for, and the realistic examples of :mod:`api.examples` where it has some."""
    item = dict(item)
    for method, described in item.items():
        if not isinstance(described, dict) or "responses" not in described:
            continue
        operation = described
        if (body := bodies.get(operation.get("operationId", ""))) is not None:
            operation = operation | {"requestBody": body}
        responses = dict(operation["responses"])
        changed: dict[str, Any] = {}
        samples = examples.BY_OPERATION.get(operation.get("operationId", ""), {})
        if "request" in samples and "requestBody" in operation:
            changed["requestBody"] = _with_example(operation["requestBody"], samples["request"])
        for status, sample in samples.items():
            if status in responses:
                responses[status] = _with_example(responses[status], sample)
        for status in sorted(_shared_statuses(path, operation)):
            responses.setdefault(status, _problem(status, _SHARED_ANSWERS[status]))
        for status, answer in responses.items():
            # Litestar's own 400 documents its default error shape; 429 and 503 say when to retry.
            if status[0] in "45" and PROBLEM_JSON not in answer.get("content", {}):
                responses[status] = _problem(status, answer.get("description") or _SHARED_ANSWERS.get(status, ""))
            elif status in ("429", "503") and "headers" not in answer:
                responses[status] = answer | {"headers": _RETRY_AFTER}
        if "304" in responses and (validators := _validators(responses.get("200", {}))):
            # RFC 9110 §15.4.5: a 304 carries the ETag and the rest a 200 would have sent.
            responses["304"] = responses["304"] | {"headers": responses["304"].get("headers", {}) | validators}
        item[method] = operation | changed | {"responses": responses}
    return item


def _no_such_page(response: Response[Any]) -> Response[Any]:
    """Litestar answers a page under ``/schema`` that no plugin serves with an HTML 404 of its own; it is
    a 404 problem like any other path's (:mod:`api.errors`)."""
    if response.status_code == 404:
        raise NotFoundException
    return response


def openapi_router() -> Router:
    """The router Litestar serves the document and its pages on (:func:`render_plugins`)."""
    return Router("/schema", route_handlers=[], include_in_schema=False, after_request=_no_such_page)


def render_plugins() -> list[OpenAPIRenderPlugin]:
    return [
        SwaggerRenderPlugin(
            version=SWAGGER_UI_VERSION,
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            favicon=FAVICON,
        ),
        RedocRenderPlugin(
            version=REDOC_VERSION, js_url=f"{ASSETS_PATH}/redoc.standalone.js", google_fonts=False, favicon=FAVICON
        ),
        JsonRenderPlugin(),
    ]


class _Asset(NamedTuple):
    path: Path
    media_type: str
    etag: str  # strong: a hash of the bytes, the same on every replica and after every restart


@functools.cache
def _assets() -> dict[str, _Asset]:
    """The files the docs pages load, hashed once per process (the first request pays a few ms)."""
    return {
        path.name: _Asset(path, media, hashlib.sha256(path.read_bytes()).hexdigest()[:32])
        for path in sorted(ASSETS_DIR.iterdir())
        if (media := _MEDIA_TYPES.get(path.suffix))
    }


@get("/{name:str}", include_in_schema=False, name="apidocs-asset")
async def _asset(name: Annotated[str, PathParameter(max_length=80)], request: Request[Any, Any, Any]) -> Response[Any]:
    asset = _assets().get(name)
    if asset is None:
        raise NotFoundException(f"no asset {name!r}")
    etag = ETag(value=asset.etag)
    headers = {"ETag": etag.to_header(), "Cache-Control": CACHE_CONTROL}
    if not_modified(request, etag.to_header()):
        return Response(b"", status_code=304, headers=headers)
    return File(asset.path, media_type=asset.media_type, content_disposition_type="inline", etag=etag, headers=headers)


def assets_router() -> Router:
    return Router(path=ASSETS_PATH, route_handlers=[_asset])
