"""Compile the pricing core (``engine/promotions/evaluate.py``) with mypyc into ``engine/promotions/_native``,
stamped with the sources it was built from (``engine.promotions.native`` says when the build is used).

    python -m engine.build_native [--required] [--opt-level N]

Nothing to do when the build there is current and was made by the same mypyc at the same level. Needs
mypy (mypyc ships with it), setuptools and a C compiler with Python's headers; without them it says so
and the plain module runs (``--required``: it fails instead, as CI and the Dockerfile do). Builds for
one checkout take turns (a lock file in ``_native``). It builds in a source tree (a checkout, or the
Dockerfile's ``/src`` before ``pip install .`` ships the build as package data), not inside an
installed package, whose record of its files would not know the build.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.metadata
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from engine.promotions.native import (
    BUILD,
    FORMAT,
    ROOT,
    SOURCE,
    built_files,
    current,
    read_stamp,
    sources,
    stamp,
)


def _compiler() -> str:
    try:
        return f"mypy {importlib.metadata.version('mypy')}"
    except importlib.metadata.PackageNotFoundError:
        return "mypy (not installed)"


def fresh(opt_level: str) -> bool:
    """Whether the build there is current, made by this mypyc at ``opt_level``, from every source it
    should have hashed (a stamp that hashed fewer is built again)."""
    found = read_stamp()
    return (
        current()
        and found is not None
        and found.get("made_by") == [_compiler(), opt_level]
        and set(found.get("sources", {})) == set(sources())
    )


def build(*, opt_level: str = "2") -> bool:
    """Compile ``evaluate.py`` into ``_native`` unless the build there is :func:`fresh`; True if it built.
    Raises when it cannot (no mypy, no compiler, a type error mypyc refuses)."""
    BUILD.mkdir(exist_ok=True)
    with (BUILD / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build of this checkout finishes first (then this one is fresh)
        if fresh(opt_level):
            return False
        _build(opt_level)
    return True


def _build(opt_level: str) -> None:
    # Build time only: a service that never builds its core needs neither.
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import Distribution  # type: ignore[import-untyped]  # noqa: PLC0415

    said = io.StringIO()  # mypyc's notes and setuptools' lines: shown only when it fails
    with tempfile.TemporaryDirectory(prefix="kartka-native-") as scratch:
        work = Path(scratch)
        here, cache = Path.cwd(), os.environ.get("MYPY_CACHE_DIR")
        os.chdir(ROOT)  # mypyc names the module by its path: engine/promotions/evaluate.py
        os.environ["MYPY_CACHE_DIR"] = str(work / "mypy")  # its own: builds for two virtualenvs may run at once
        try:
            hashed = sources()
            with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
                extensions = mypycify(
                    [str(SOURCE.relative_to(ROOT))], opt_level=opt_level, target_dir=str(work / "c"), verbose=False
                )
                dist = Distribution({"name": "kartka-native", "ext_modules": extensions})
                dist.verbose = False
                command = dist.get_command_obj("build_ext")
                command.build_lib = str(work / "lib")
                command.build_temp = str(work / "obj")
                dist.run_command("build_ext")
        except (Exception, SystemExit) as exc:  # mypyc exits on a type error
            raise RuntimeError(f"{type(exc).__name__}: {exc}\n{said.getvalue()[-3000:]}") from exc
        finally:
            os.chdir(here)
            if cache is None:
                del os.environ["MYPY_CACHE_DIR"]
            else:
                os.environ["MYPY_CACHE_DIR"] = cache
        out = work / "lib" / "engine" / "promotions"
        missing = [name for name in built_files() if not (out / name).is_file()]
        if missing:
            raise RuntimeError(f"mypyc did not build {missing}:\n{said.getvalue()[-3000:]}")
        if sources() != hashed:
            raise RuntimeError("the sources changed while they were compiled: build again")
        stamp().unlink(missing_ok=True)  # no stamp while the files change: the plain module runs meanwhile
        for name in built_files():
            staged = BUILD / f".{name}.new"
            shutil.copyfile(out / name, staged)
            staged.replace(BUILD / name)  # a process that has the old file mapped keeps it
        made = {"format": FORMAT, "sources": hashed, "files": built_files(), "made_by": [_compiler(), opt_level]}
        staged = stamp().with_name(f".{stamp().name}.new")
        staged.write_text(json.dumps(made, indent=1) + "\n")
        staged.replace(stamp())


def main() -> None:
    parser = argparse.ArgumentParser(description="Compile the pricing core (engine/promotions/evaluate.py) with mypyc.")
    parser.add_argument("--opt-level", default="2", choices=["0", "1", "2", "3"])
    parser.add_argument("--required", action="store_true", help="fail when it cannot be built (as CI does)")
    args = parser.parse_args()
    try:
        done = build(opt_level=args.opt_level)
    except (ImportError, RuntimeError, OSError, SyntaxError, ValueError) as exc:
        sys.stderr.write(f"the pricing core was not compiled, plain Python prices carts: {exc}\n")
        raise SystemExit(1 if args.required else 0) from exc
    if args.required and not current():  # never quietly plain where the build is required
        sys.stderr.write(f"no current build of the pricing core in {BUILD}\n")
        raise SystemExit(1)
    if done:
        sys.stderr.write(f"compiled the pricing core with mypyc into {BUILD}\n")


if __name__ == "__main__":
    main()
