"""Compile the pricing core (``engine/promotions/evaluate.py``) with mypyc into ``engine/promotions/_native``,
stamped with the source it was built from (``engine.promotions.native`` says when the build is used).

    python -m engine.build_native [--required]

Nothing to do when the build there is current. Needs mypy (mypyc ships with it), setuptools and a C
compiler with Python's headers; without them it says so and the plain module runs (``--required``: it
fails instead, as on CI).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

from engine.promotions.native import BUILD, HERE, SOURCE, current, source_digest, stamp


def build(*, opt_level: str = "2") -> bool:
    """Compile ``evaluate.py`` into ``_native`` unless the build there is current; True if it built.
    Raises when it cannot (no mypy, no compiler, a type error mypyc refuses): the plain module runs."""
    if current():
        return False
    # Build time only: a service that never builds its core needs neither.
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import Distribution  # type: ignore[import-untyped]  # noqa: PLC0415

    root = HERE.parent.parent
    said = io.StringIO()  # mypyc's notes and the compiler's command lines: shown only when it fails
    with tempfile.TemporaryDirectory(prefix="kartka-native-") as scratch:
        work = Path(scratch)
        here = Path.cwd()
        digest = source_digest()
        os.chdir(root)  # mypyc names the module by its path: engine/promotions/evaluate.py
        cache = os.environ.get("MYPY_CACHE_DIR")
        # A cache of its own: mypyc checks with other options than ./scripts/test's mypy, which may run beside it.
        os.environ["MYPY_CACHE_DIR"] = str(root / ".mypy_cache" / "native")
        try:
            with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
                extensions = mypycify(
                    [str(SOURCE.relative_to(root))], opt_level=opt_level, target_dir=str(work / "c"), verbose=False
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
        built = sorted((work / "lib" / "engine" / "promotions").glob("*.*"))
        if not built or source_digest() != digest:  # nothing built, or evaluate.py changed meanwhile
            return False
        BUILD.mkdir(exist_ok=True)
        stamp().unlink(missing_ok=True)  # no stamp while the files change: the plain module runs meanwhile
        for file in built:
            staged = BUILD / f".{file.name}.new"
            shutil.copyfile(file, staged)
            staged.replace(BUILD / file.name)  # a process that has the old file mapped keeps it
        stamp().write_text(digest + "\n")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description="Compile the pricing core (engine/promotions/evaluate.py) with mypyc.")
    parser.add_argument("--opt-level", default="2", choices=["0", "1", "2", "3"])
    parser.add_argument("--required", action="store_true", help="fail when it cannot be built (as CI does)")
    args = parser.parse_args()
    try:
        done = build(opt_level=args.opt_level)
    except (ImportError, RuntimeError, OSError) as exc:
        sys.stderr.write(f"the pricing core was not compiled, plain Python prices carts: {exc}\n")
        raise SystemExit(1 if args.required else 0) from exc
    if done:
        sys.stderr.write(f"compiled the pricing core with mypyc into {BUILD}\n")


if __name__ == "__main__":
    main()
