"""The pricing core compiled with mypyc, used only while it is the build of the sources as they are.

``engine/promotions/evaluate.py`` is plain, typed Python and stays the source of truth. Compiled with
mypyc (which ships with mypy), the same code prices a cart in about 60 % of the time: every till's
calculate and commit run it. The build lives in ``engine/promotions/_native/`` with a stamp per Python
ABI: the SHA-256 of ``evaluate.py`` and of each of the project's modules it imports (the compiled code
checks the types it read there: a ``CartLine.qty`` that became a float would be refused), the built
files, and the compiler and optimisation level that made them. ``python -m engine.build_native`` makes
it (``scripts/run``, ``scripts/test``, ``scripts/bench*`` and the Dockerfile run it).

``engine.promotions`` puts ``_native`` first on its path when that stamp matches the sources as they are
now and the built files are all there (:func:`native_path`), so an edited source is never shadowed by an
older build, and without a build (no C compiler, another Python) the plain module runs.
``KARTKA_PURE_PYTHON_ENGINE=1`` asks for the plain module anyway.

Both answer alike: ``tests/engine/test_native.py`` prices random carts, catalogs and facts with each and
compares the answers byte for byte. What differs is what a compiled (native) class allows beyond that,
which nothing in Kartka does: a ``Catalog`` or ``Active`` cannot be pickled, deep-copied, weakly
referenced, subclassed or given new attributes; monkeypatching one of the module's functions does not
change what its other functions call; and arguments of the wrong type (a float quantity, ``None`` for a
list) are refused with ``TypeError`` where the plain module would carry on.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import json
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "evaluate.py"
BUILD = HERE / "_native"
ROOT = HERE.parent.parent
"""The folder the project's top-level packages are in (the checkout, or site-packages)."""
OURS = ("engine", "wallet", "kartka", "analytics", "notifications", "api", "boot")


def suffix() -> str:
    """The running Python's extension suffix, as the built files carry it: ``.cpython-311-x86_64-linux-gnu.so``."""
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def stamp(build: Path = BUILD) -> Path:
    """The stamp of the running Python's build."""
    return build / f"evaluate{suffix().removesuffix('.so').removesuffix('.pyd')}.json"


def sources(source: Path = SOURCE, root: Path = ROOT) -> dict[str, str]:
    """``source`` and the project's modules it imports, each as a path under ``root`` → its SHA-256."""
    files = [source]
    for node in ast.walk(ast.parse(source.read_bytes())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OURS:
            module = root.joinpath(*node.module.split("."))
            files.append(module / "__init__.py" if module.is_dir() else module.with_suffix(".py"))
    return {f.relative_to(root).as_posix(): _digest(f) for f in sorted(set(files))}


def read_stamp(build: Path = BUILD) -> dict[str, Any] | None:
    try:
        found = json.loads(stamp(build).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def current(build: Path = BUILD, source: Path = SOURCE, root: Path = ROOT) -> bool:
    """Whether ``build`` holds this Python's build of ``source`` and what it imports as they are now,
    with every file it built. (An edit that adds an import changes ``source``: the files the stamp
    lists are all there is to hash.)"""
    found = read_stamp(build)
    if found is None:
        return False
    built, hashed = found.get("files"), found.get("sources")
    if not isinstance(built, list) or not isinstance(hashed, dict) or source.relative_to(root).as_posix() not in hashed:
        return False
    try:
        return all(_digest(root / name) == digest for name, digest in hashed.items()) and all(
            (build / name).is_file() for name in built
        )
    except OSError:
        return False


def _digest(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def native_path(path: list[str], build: Path = BUILD, source: Path = SOURCE, root: Path = ROOT) -> list[str]:
    """``engine.promotions``' search path, with the compiled core first when it is current."""
    if os.environ.get("KARTKA_PURE_PYTHON_ENGINE", "").lower() in {"1", "true", "yes"}:
        return path
    return [str(build), *path] if current(build, source, root) else path


def compiled() -> bool:
    """Whether the pricing core in use is the compiled one (imports it)."""
    from engine.promotions import evaluate  # noqa: PLC0415  (the package imports this module to set its path)

    return not str(evaluate.__file__).endswith(".py")
