"""Card barcodes (QR, Code128, EAN-13, PDF417) as PNG and SVG, sized for a till scanner reading a phone.

Shoppers hold their phone under the till's scanner, so the choices below are made for a screen:

- Quiet zones at or above the standards' minimums: QR 4 modules; Code128 10 each side; EAN-13 11 each
  side (the standard asks 11 left and 7 right; python-barcode has one setting for both); PDF417 4 (the
  standard asks 2; the other two keep the app's UI away from the symbol). The white is part of the
  image, so whatever the app draws around it cannot eat into it.
- QR: error correction M, so about 15% of the symbol may be lost to glare or a cracked screen, and 8 px
  per module in PNG, so a module still spans several device pixels after the app scales the image.
- Code128 and EAN-13: 5 px per module in PNG. python-barcode lays out in millimetres and converts them
  with the dpi; whole millimetres at 127 dpi (5 px/mm) are the smallest scale that converts without
  rounding, so the layout uses 1 mm = 1 module. At 3 or 4 px it truncates fractions and draws a 3 px
  module as bars of 2 to 4 px, and uneven bars are what makes a scanner hesitate. Bars are at least
  100 px tall and a quarter of the image width (quiet zones included), so a tilted phone still crosses
  every bar with one scan line. The number is printed under the bars for when a scanner gives up.
- PDF417: modules 3 px wide, rows 3 modules tall (the usual ratio for imagers), the error correction
  level ISO/IEC 15438 recommends for the amount of data, and the column count that makes the symbol
  closest to 3:1, which fills the width of a phone held upright.
- SVG: the same layout in module units with a viewBox, so a page may scale it freely; width and height
  equal to the PNG's pixels; ``shape-rendering="crispEdges"``; a white background; no ids (several may
  share a page); no scripts, styles or external references. QR uses qrcode's single-path image.

Rendering is deterministic (the same input gives the same bytes): card numbers' images are cached per
process, and the ETag is a hash of the input and of everything that shapes the output, including
:data:`RENDERER_VERSION` (bump it whenever a parameter here changes) and the drawing libraries' versions.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib.metadata
import io
import math
import xml.etree.ElementTree as ET
from typing import Final

import barcode
import pdf417gen
import qrcode
import qrcode.constants
from barcode.charsets import code128
from barcode.writer import ImageWriter, SVGWriter
from pdf417gen.compaction import compact as pdf417_compact
from PIL import Image, features
from qrcode.image.pil import PilImage
from qrcode.image.svg import SvgPathFillImage

from kartka.errors import InvalidInput
from wallet.cards import CARD_LENGTH, is_valid_card_number


class Symbology(enum.StrEnum):
    QR = "qr"
    CODE128 = "code128"
    EAN13 = "ean13"
    PDF417 = "pdf417"


class ImageType(enum.StrEnum):
    PNG = "png"
    SVG = "svg"


MEDIA_TYPES: Final[dict[ImageType, str]] = {ImageType.PNG: "image/png", ImageType.SVG: "image/svg+xml"}

RENDERER_VERSION: Final = 2
"""Part of every ETag: bump it whenever a parameter below or the drawing code changes."""

MAX_CONTENT_LENGTH: Final = 300
"""A signed app token is a fifth of this; much longer and a QR gets too dense for a phone screen."""

CACHE_SIZE: Final = 4096
"""Card numbers' images kept per process, at most about 3.5 kB each (the QR SVG)."""

QR_MODULE_PX: Final = 8
QR_QUIET_MODULES: Final = 4
QR_ERROR_CORRECTION: Final = qrcode.constants.ERROR_CORRECT_M

LINEAR_MODULE_PX: Final = 5
LINEAR_DPI: Final = 127  # 5 px per mm, and a module is laid out as 1 mm
CODE128_QUIET_MODULES: Final = 10
EAN13_QUIET_MODULES: Final = 11
LINEAR_MIN_BAR_MODULES: Final = 20  # 100 px
LINEAR_BAR_SHARE: Final = 0.25  # bar height as a share of the image width
LINEAR_FONT_PT: Final = 22  # python-barcode's points of its "mm": text 7.8 modules (38 px) high
LINEAR_TEXT_DISTANCE: Final = 10.0  # from the bars' foot to the text's descender line, in modules
LINEAR_MARGIN_TOP: Final = 4.0  # white above the bars, in modules
LINEAR_MARGIN_BOTTOM: Final = 1.0  # white below the text, on top of the half text height python-barcode adds

PDF417_MODULE_PX: Final = 3
PDF417_ROW_MODULES: Final = 3
PDF417_QUIET_MODULES: Final = 4
PDF417_ASPECT: Final = 3.0

_PT_TO_MM: Final = 0.352777778  # python-barcode's own factor: SVG text must match its layout
_SVG_NS: Final = "http://www.w3.org/2000/svg"
_XML_PROLOG: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'
_PRINTABLE_ASCII: Final = frozenset(map(chr, range(0x20, 0x7F)))


def _library_versions() -> str:
    """A new version of a drawing, font or compression library may change the bytes, so the ETag too."""
    packages = [f"{p}={importlib.metadata.version(p)}" for p in ("qrcode", "python-barcode", "pdf417gen", "pillow")]
    libraries = [f"{f}={features.version(f)}" for f in ("zlib", "freetype2")]
    return ",".join(packages + libraries)


_ETAG_SALT: Final = f"kartka-barcodes/{RENDERER_VERSION}/{_library_versions()}"


def etag(content: str, symbology: Symbology, image_type: ImageType) -> str:
    """A strong ETag without rendering: the output is a pure function of what is hashed here."""
    key = "\x00".join((_ETAG_SALT, str(symbology), str(image_type), content))
    return f'"bc{RENDERER_VERSION}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"'


def render(content: str, symbology: Symbology, image_type: ImageType) -> bytes:
    """The image; :class:`InvalidInput` (field ``content``) says why content cannot be encoded.

    Only card numbers are cached: they are shown again and again, while an app token lives a minute and
    would only push card images out of the cache.
    """
    symbology, image_type = Symbology(symbology), ImageType(image_type)
    _check(content, symbology)
    if _is_card_number(content):
        return _render_cached(content, symbology, image_type)
    return _render(content, symbology, image_type)


def svg_inline(content: str, symbology: Symbology) -> str:
    """The ``<svg>`` element alone, to put inside an HTML page (no XML prolog, no ids to collide)."""
    return render(content, symbology, ImageType.SVG).decode().removeprefix(_XML_PROLOG)


def _is_card_number(content: str) -> bool:
    # The length too: is_valid_card_number's "$" lets a trailing newline through.
    return len(content) == CARD_LENGTH and is_valid_card_number(content)


def _check(content: str, symbology: Symbology) -> None:
    if symbology is Symbology.EAN13:
        if not _is_card_number(content):
            raise InvalidInput(
                "EAN-13 carries exactly 13 digits with a valid check digit; use QR, Code128 or PDF417 for "
                "anything else",
                field="content",
            )
        return
    if not content:
        raise InvalidInput("there is nothing to encode: give a card number or a token", field="content")
    if len(content) > MAX_CONTENT_LENGTH:
        raise InvalidInput(
            f"a barcode here carries at most {MAX_CONTENT_LENGTH} characters, this content has {len(content)}",
            field="content",
        )
    if not _PRINTABLE_ASCII.issuperset(content):
        raise InvalidInput(
            "only printable ASCII can be encoded: Latin letters, digits, space and ASCII punctuation",
            field="content",
        )


def _render(content: str, symbology: Symbology, image_type: ImageType) -> bytes:
    match symbology:
        case Symbology.QR:
            return _qr(content, image_type)
        case Symbology.CODE128 | Symbology.EAN13:
            return _linear(content, symbology, image_type)
        case Symbology.PDF417:
            return _pdf417(content, image_type)


_render_cached: Final = functools.lru_cache(maxsize=CACHE_SIZE)(_render)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # Pillow adds no timestamp or other varying chunk
    return buffer.getvalue()


def _number(value: float) -> str:
    """Coordinates written the same way every time, without float noise."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _svg_document(root: ET.Element, *, x: float, y: float, width: float, height: float, px: int) -> bytes:
    """Give a library's SVG tree the root element every Kartka SVG has (user unit = module) and serialise."""
    root.attrib.clear()
    root.attrib.update(
        {
            "xmlns": _SVG_NS,
            "version": "1.1",
            "width": _number(width * px),
            "height": _number(height * px),
            "viewBox": " ".join(map(_number, (x, y, width, height))),
            "shape-rendering": "crispEdges",
        }
    )
    for element in root.iter():
        element.attrib.pop("id", None)
    return (_XML_PROLOG + ET.tostring(root, encoding="unicode")).encode()


def _qr(content: str, image_type: ImageType) -> bytes:
    png = image_type is ImageType.PNG
    # qrcode's SVG unit is a tenth of box_size: 10 makes one user unit per module.
    code = qrcode.QRCode(
        error_correction=QR_ERROR_CORRECTION, border=QR_QUIET_MODULES, box_size=QR_MODULE_PX if png else 10
    )
    code.add_data(content)
    code.make(fit=True)
    if png:
        image: Image.Image = code.make_image(image_factory=PilImage).get_image()
        return _png(image)
    root: ET.Element = code.make_image(image_factory=SvgPathFillImage).get_image()
    side = code.modules_count + 2 * QR_QUIET_MODULES
    return _svg_document(root, x=0, y=0, width=side, height=side, px=QR_MODULE_PX)


_START_C: Final = code128.START_CODES["C"]
_TO_A_OR_B: Final = frozenset({code128.C["TO_A"], code128.C["TO_B"]})


class _Code128(barcode.Code128):  # type: ignore[misc]
    """python-barcode's Code128 without its leading-"99" bug (python-barcode#251, fixed upstream after
    0.16.1, not released): it folds a start in charset C and a switch to another charset into one start
    code, and took the pair "99" (code 99 in charset C, the same number as the switch to C elsewhere)
    for a switch, so "9912" drew as "12" and "999" as "9". Only a switch to A or B is folded here."""

    def _try_to_optimize(self, encoded: list[int]) -> list[int]:
        if len(encoded) > 1 and encoded[0] == _START_C and encoded[1] in _TO_A_OR_B:
            encoded[:2] = [code128.TO[encoded[1]]]
        return encoded


def _linear(content: str, symbology: Symbology, image_type: ImageType) -> bytes:
    kind, quiet = (
        (_Code128, CODE128_QUIET_MODULES) if symbology is Symbology.CODE128 else (barcode.EAN13, EAN13_QUIET_MODULES)
    )
    # Code128.build() leaves charset state behind: measure with one object, draw with another.
    width = len(kind(content).build()[0]) + 2 * quiet
    options = {
        "module_width": 1.0,
        "module_height": float(max(LINEAR_MIN_BAR_MODULES, math.ceil(width * LINEAR_BAR_SHARE))),
        "quiet_zone": float(quiet),
        "font_size": LINEAR_FONT_PT,
        "text_distance": LINEAR_TEXT_DISTANCE,
        "margin_top": LINEAR_MARGIN_TOP,
        "margin_bottom": LINEAR_MARGIN_BOTTOM,
        "background": "white",
        "foreground": "black",
        "write_text": True,
    }
    if image_type is ImageType.PNG:
        writer = ImageWriter(format="PNG", mode="L", dpi=LINEAR_DPI)
        image: Image.Image = kind(content, writer=writer).render(options)
        return _png(image)
    drawn: bytes = kind(content, writer=SVGWriter()).render({**options, "with_doctype": False})
    return _linear_svg(drawn)


def _linear_svg(drawn: bytes) -> bytes:
    """python-barcode's SVG says "mm" everywhere and has no viewBox. Laid out with 1 mm = 1 module, its
    numbers are module units already: without "mm" and with a viewBox it scales and matches the PNG."""
    root = ET.fromstring(drawn)  # noqa: S314 - python-barcode's own output, never outside input
    for element in root.iter():
        element.tag = element.tag.removeprefix(f"{{{_SVG_NS}}}")
        if element.tag != "text":  # python-barcode pretty-prints; the printed number stays
            element.text = None
        element.tail = None
        style = element.attrib.pop("style", "")
        if element.tag == "rect":
            element.set("fill", style.removeprefix("fill:").rstrip(";"))
        for name in ("x", "y", "width", "height"):
            value = element.get(name, "")
            if value.endswith("mm"):
                element.set(name, _number(float(value.removesuffix("mm"))))
        if element.tag == "text":
            element.set("fill", "black")
            element.set("font-family", "DejaVu Sans Mono, monospace")  # the font of the PNG's text
            element.set("font-size", _number(LINEAR_FONT_PT * _PT_TO_MM))
            element.set("text-anchor", "middle")
    width = float(root.get("width", "").removesuffix("mm"))
    # python-barcode floors the PNG's height to whole pixels; the SVG keeps the same size.
    height = math.floor(float(root.get("height", "").removesuffix("mm")) * LINEAR_MODULE_PX) / LINEAR_MODULE_PX
    return _svg_document(root, x=0, y=0, width=width, height=height, px=LINEAR_MODULE_PX)


def _pdf417_shape(data: bytes) -> tuple[int, int]:
    """Columns and error correction level: the level ISO/IEC 15438 recommends for the number of data
    codewords, and the column count that brings the symbol closest to PDF417_ASPECT."""
    words = sum(1 for _ in pdf417_compact(data)) + 1  # + the length descriptor
    level = 2 if words <= 40 else 3 if words <= 160 else 4 if words <= 320 else 5
    total = words + 2 ** (level + 1)
    best: tuple[float, int] | None = None
    for columns in range(1, 31):
        rows = math.ceil(total / columns)
        if not 3 <= rows <= 90:  # PDF417 has 3 to 90 rows
            continue
        width = 17 * (columns + 4) + 1  # start, left indicator, data, right indicator, stop
        distance = abs(math.log(width / (rows * PDF417_ROW_MODULES) / PDF417_ASPECT))
        if best is None or distance < best[0]:
            best = (distance, columns)
    assert best is not None  # MAX_CONTENT_LENGTH keeps all content far inside PDF417's capacity
    return best[1], level


def _pdf417(content: str, image_type: ImageType) -> bytes:
    data = content.encode("ascii")
    columns, level = _pdf417_shape(data)
    codes = pdf417gen.encode(data, columns=columns, security_level=level)
    quiet = PDF417_QUIET_MODULES
    if image_type is ImageType.PNG:
        image: Image.Image = pdf417gen.render_image(
            codes,
            scale=PDF417_MODULE_PX,
            ratio=PDF417_ROW_MODULES,
            padding=quiet * PDF417_MODULE_PX,
            fg_color="#000000",
            bg_color="#ffffff",
        )
        return _png(image.convert("1", dither=Image.Dither.NONE))  # black and white only: 1 bit is exact
    root: ET.Element = pdf417gen.render_svg(codes, scale=1, ratio=PDF417_ROW_MODULES, color="#000000").getroot()
    width, height = float(root.get("width", "")), float(root.get("height", ""))
    _pdf417_as_path(root)
    frame = {"x": -quiet, "y": -quiet, "width": width + 2 * quiet, "height": height + 2 * quiet}
    root.insert(0, ET.Element("rect", {name: _number(value) for name, value in frame.items()}, fill="white"))
    return _svg_document(root, **frame, px=PDF417_MODULE_PX)


def _pdf417_as_path(root: ET.Element) -> None:
    """pdf417gen draws a rect per dark module, 20 kB for a card number; one path of the horizontal runs
    (as qrcode does) is a seventh of that and leaves no seams between neighbouring modules."""
    group = root.find("g")
    assert group is not None  # render_svg always draws its modules in one group
    runs: list[list[int]] = []  # [x, y, width]; pdf417gen lists modules row by row, left to right
    for rect in group.iter("rect"):
        x, y = int(rect.get("x", "")), int(rect.get("y", ""))
        if runs and runs[-1][1] == y and runs[-1][0] + runs[-1][2] == x:
            runs[-1][2] += 1
        else:
            runs.append([x, y, 1])
    group.clear()
    group.set("fill", "#000000")
    group.append(ET.Element("path", d="".join(f"M{x},{y}h{w}v{PDF417_ROW_MODULES}h-{w}z" for x, y, w in runs)))
