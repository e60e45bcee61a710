"""The pricing core compiled with mypyc, used only while it is the build of the sources as they are.

``engine/promotions/evaluate.py`` is plain, typed Python and stays the source of truth. Compiled with
mypyc (which ships with mypy), the same code prices a cart in about 60 % of the time: every till's
calculate and commit run it. The build lives in ``engine/promotions/_native/`` with a stamp per Python
ABI: the SHA-256 of ``evaluate.py`` and of every project module it imports, directly or through another
(the compiled code relies on the types it read there: a ``CartLine.qty`` that became a float would be
refused), the files built, and the compiler and optimisation level that made them.
``python -m engine.build_native`` makes it (``scripts/run``, ``scripts/test``, ``scripts/bench*`` and the
Dockerfile run it).

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
FORMAT = 2
"""The stamp's format: a stamp of another format (one that hashed fewer sources) is not current."""


def suffix() -> str:
    """The running Python's extension suffix, as the built files carry it: ``.cpython-311-x86_64-linux-gnu.so``."""
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def stamp(build: Path = BUILD) -> Path:
    """The stamp of the running Python's build."""
    return build / f"evaluate{suffix().removesuffix('.so').removesuffix('.pyd')}.json"


def built_files() -> list[str]:
    """The files a build for the running Python consists of: the module and mypyc's shared library."""
    return [f"evaluate{suffix()}", f"evaluate__mypyc{suffix()}"]


def sources(source: Path = SOURCE, root: Path = ROOT) -> dict[str, str]:
    """``source`` and every project module it imports, directly or through another (the compiled code
    relies on the types it finds there), each as a path under ``root`` → its SHA-256."""
    seen: set[Path] = set()
    todo = [source]
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        for node in ast.walk(ast.parse(file.read_bytes())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OURS:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.split(".")[0] in OURS]
            todo += [found for name in names if (found := _module_file(root, name)) is not None]
    return {f.relative_to(root).as_posix(): _digest(f) for f in sorted(seen)}


def _module_file(root: Path, name: str) -> Path | None:
    path = root.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def read_stamp(build: Path = BUILD) -> dict[str, Any] | None:
    try:
        found = json.loads(stamp(build).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) and found.get("format") == FORMAT else None


def current(build: Path = BUILD, source: Path = SOURCE, root: Path = ROOT) -> bool:
    """Whether ``build`` holds this Python's build of ``source`` and what it imports as they are now,
    with every file it built. (An edit that adds an import changes a file the stamp lists: the files it
    lists are all there is to hash.) Never raises: it runs when ``engine.promotions`` is imported, and
    whatever is wrong with a build, the plain module runs."""
    try:
        return _current(build, source, root)
    except Exception:  # a stamp or a file in any state: the plain module runs, the app starts
        return False


def _current(build: Path, source: Path, root: Path) -> bool:
    found = read_stamp(build)
    if found is None:
        return False
    built, hashed = found.get("files"), found.get("sources")
    if not isinstance(built, list) or not isinstance(hashed, dict) or set(built) != set(built_files()):
        return False
    return (
        source.relative_to(root).as_posix() in hashed
        and all(_unchanged(root, name, digest) for name, digest in hashed.items())
        and all((build / name).is_file() for name in built)
    )


def _unchanged(root: Path, name: object, digest: object) -> bool:
    """Whether the tree's own file ``name`` (no absolute path, no ``..``) still has SHA-256 ``digest``."""
    if not (isinstance(name, str) and isinstance(digest, str)):
        return False
    path = Path(name)
    if path.is_absolute() or ".." in path.parts or not (root / path).is_file():
        return False
    return _digest(root / path) == digest


def _digest(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def pure_requested() -> bool:
    """Whether ``KARTKA_PURE_PYTHON_ENGINE`` asks for the plain module (``1``, ``true`` or ``yes``)."""
    return os.environ.get("KARTKA_PURE_PYTHON_ENGINE", "").strip().lower() in {"1", "true", "yes"}


def native_path(path: list[str], build: Path = BUILD, source: Path = SOURCE, root: Path = ROOT) -> list[str]:
    """``engine.promotions``' search path, with the compiled core first when it is current."""
    if pure_requested():
        return path
    return [str(build), *path] if current(build, source, root) else path


def compiled() -> bool:
    """Whether the pricing core in use is the compiled one (imports it)."""
    from engine.promotions import evaluate  # noqa: PLC0415  (the package imports this module to set its path)

    return not str(evaluate.__file__).endswith(".py")
