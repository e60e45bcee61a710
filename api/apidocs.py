"""Swagger UI and ReDoc served from the package, so `/schema` works offline and asks no CDN for anything.

The assets are the released bundles of swagger-ui-dist 5.35.0 and redoc 2.5.4 (licences beside them),
served under ``/schema/assets`` with a content-hash ETag (a revalidation is a 304 through
:func:`api.conditional.not_modified`); to upgrade, replace the files and the versions here.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Annotated, Any, Final, NamedTuple

from litestar import Request, Response, get
from litestar.datastructures import ETag
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin
from litestar.params import PathParameter
from litestar.response import File
from litestar.router import Router

from api.conditional import not_modified

ASSETS_DIR = Path(__file__).parent / "assets" / "apidocs"
ASSETS_PATH = "/schema/assets"
SWAGGER_UI_VERSION = "5.35.0"
REDOC_VERSION = "2.5.4"
#: Our own pass icon, not Litestar's badge from a CDN.
FAVICON = f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon.png'>"
CACHE_CONTROL: Final = "public, max-age=86400"
_MEDIA_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class _Asset(NamedTuple):
    path: Path
    media_type: str
    etag: str  # strong: a hash of the bytes, the same on every replica and after every restart


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
            version=REDOC_VERSION,
            js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            google_fonts=False,
            favicon=FAVICON,
        ),
    ]


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
