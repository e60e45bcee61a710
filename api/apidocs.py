"""Swagger UI and ReDoc served from the package, so `/schema` works offline and asks no CDN for anything.

The assets are the released bundles of swagger-ui-dist 5.35.0 and redoc 2.5.4 (licences beside them),
served under ``/schema/assets``; to upgrade, replace the files and the versions here.
"""

from __future__ import annotations

from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import OpenAPIRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

ASSETS_DIR = Path(__file__).parent / "assets" / "apidocs"
ASSETS_PATH = "/schema/assets"
SWAGGER_UI_VERSION = "5.35.0"
REDOC_VERSION = "2.5.4"
#: Our own pass icon, not Litestar's badge from a CDN.
FAVICON = f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon.png'>"


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


def assets_router() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[ASSETS_DIR],
        include_in_schema=False,
        cache_control=CacheControlHeader(public=True, max_age=86_400),
        name="apidocs-assets",
    )
