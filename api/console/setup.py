"""The console's templates and assets, as the app mounts them.

One Jinja environment for every server-rendered page (``api/templates``; the console's under
``console/``), autoescaping on. The console's assets (htmx, its stylesheet) ship in ``api/assets/console``
and are served under ``/console/assets`` with a revalidation ETag: nothing comes from a CDN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar.router import Router
from litestar.static_files import create_static_files_router

TEMPLATES: Final = Path(__file__).resolve().parent.parent / "templates"
ASSETS: Final = Path(__file__).resolve().parent.parent / "assets" / "console"


def console_assets() -> Router:
    return create_static_files_router(
        path="/console/assets",
        directories=[ASSETS],
        name="console-assets",
        include_in_schema=False,
        cache_control=None,
    )
