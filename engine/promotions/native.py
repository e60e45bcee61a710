"""The pricing core compiled with mypyc, used only while it is the build of the source beside it.

``engine/promotions/evaluate.py`` is plain, typed Python and stays the source of truth. Compiled with
mypyc (which ships with mypy), the same code prices a cart in about 60 % of the time: every till's
calculate and commit run it. The build lives in ``engine/promotions/_native/`` with a stamp: the SHA-256
of the ``evaluate.py`` it was compiled from, one per Python ABI. ``python -m engine.build_native`` makes it
(``scripts/run``, ``scripts/test``, ``scripts/bench*`` and the Dockerfile run it).

``engine.promotions`` puts ``_native`` first on its path when the stamp for the running Python matches
``evaluate.py`` as it is now (:func:`native_path`), so an edited ``evaluate.py`` is never shadowed by
an older build, and without a build (no C compiler, another Python) the plain module runs. Both give
the same answers: ``tests/engine/test_native.py`` prices random carts with each and compares them.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "evaluate.py"
BUILD = HERE / "_native"


def stamp(build: Path = BUILD) -> Path:
    """The stamp of the running Python's ABI (its extension suffix, as the built files carry it)."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]  # ".cpython-311-x86_64-linux-gnu.so"
    return build / f"evaluate{suffix.removesuffix('.so').removesuffix('.pyd')}.sha256"


def source_digest(source: Path = SOURCE) -> str:
    return hashlib.sha256(source.read_bytes()).hexdigest()


def current(build: Path = BUILD, source: Path = SOURCE) -> bool:
    """Whether ``build`` holds this Python's build of ``source`` as it is now."""
    try:
        return stamp(build).read_text().strip() == source_digest(source)
    except OSError:
        return False


def native_path(path: list[str]) -> list[str]:
    """``engine.promotions``' search path, with the compiled core first when it is current."""
    if os.environ.get("KARTKA_PURE_PYTHON_ENGINE") or not current():
        return path
    return [str(BUILD), *path]


def compiled() -> bool:
    """Whether the pricing core in use is the compiled one (imports it)."""
    from engine.promotions import evaluate  # noqa: PLC0415  (the package imports this module to set its path)

    return not str(evaluate.__file__).endswith(".py")
