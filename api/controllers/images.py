"""Answering with a card image: one place for its media type, ETag and caching."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response

from api.conditional import not_modified
from wallet.barcodes import MEDIA_TYPES, ImageType, Symbology, etag, render

#: Private (the image is the shopper's card), revalidated after a day; the ETag makes that a 304.
CACHE_CONTROL: Final = "private, max-age=86400"


def barcode_response(
    request: Request[Any, Any, Any], number: str, symbology: Symbology, image_type: ImageType
) -> Response[bytes]:
    tag = etag(number, symbology, image_type)
    headers = {"ETag": tag, "Cache-Control": CACHE_CONTROL, "Vary": "Authorization"}
    if not_modified(request, tag):
        return Response(b"", status_code=304, headers=headers)
    return Response(render(number, symbology, image_type), media_type=MEDIA_TYPES[image_type], headers=headers)
