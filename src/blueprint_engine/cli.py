"""``wf``: run blueprints on the embedded runner, migrate, work the queue.

wf migrate
wf validate examples/payment_receipt/blueprint.json
wf run examples/payment_receipt/blueprint.json --payload examples/payment_receipt/payload.json
wf worker            # the embedded runner without the API (Ctrl-C stops it cleanly)
wf credentials new-key      # a Fernet key for CREDENTIALS_KEY
wf credentials rotate-key   # re-encrypt every credential with the first CREDENTIALS_KEY
wf db status         # which PostgreSQL is used (DATABASE_URL, the local server, embedded)
wf db url            # its URL, for psql and other tools
wf db start / stop   # keep the embedded server up between commands, or stop it
wf prune [--dry-run] # delete what is past the retention policy (or say what would go)
wf users export USER_ID > export.json
wf users erase USER_ID      # everything the user owns, for good
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import psycopg
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from blueprint_engine import logs
from blueprint_engine.config import Settings, get_settings
from blueprint_engine.errors import InvalidBlueprint
from blueprint_engine.integrations import ToolResources, load_settings
from blueprint_engine.services import (
    account_data_service,
    credential_service,
    retention_service,
    run_service,
)
from blueprint_engine.services.retention_service import Pruner
from blueprint_engine.services.schedule_service import Scheduler
from blueprint_engine.store import database, migrations, vault
from blueprint_engine.store import retention as retention_store
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import Pool, open_pool
from blueprint_engine.workflows.runners import Dispatcher, EmbeddedDispatcher
from blueprint_engine.workflows.runners.embedded import EmbeddedRunner
from blueprint_engine.workflows.schema import Blueprint, validate_blueprint

cli = typer.Typer(
    help="Durable blueprint runs on PostgreSQL.", no_args_is_help=True, add_completion=False
)
db_cli = typer.Typer(
    help="Which PostgreSQL is used; start and stop the embedded one.", no_args_is_help=True
)
cli.add_typer(db_cli, name="db")
console = Console()
err = Console(stderr=True)

_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "retrying": "yellow",
    "waiting": "cyan",
    "skipped": "dim",
    "running": "bold blue",
    "pending": "dim",
}


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        err.print(f"[red]{what} file not found:[/] {path}")
    except json.JSONDecodeError as exc:
        err.print(
            f"[red]{what} {path} is not valid JSON:[/] line {exc.lineno} col {exc.colno}: {exc.msg}"
        )
    raise typer.Exit(2)


def _print_issues(exc: InvalidBlueprint) -> None:
    table = Table(title="Invalid blueprint", title_style="bold red")
    for column in ("node", "field", "problem"):
        table.add_column(column)
    for issue in exc.details:
        table.add_row(
            issue.get("node_id") or "-", ".".join(map(str, issue["loc"])), issue["message"]
        )
    err.print(table)


@contextmanager
def _database(settings: Settings, out: Console = console) -> Iterator[None]:
    """Hold the database for a command (the embedded server stays up until it ends), saying
    which one it is on ``out``; exit 3 when the embedded server does not start."""
    try:
        hold = database.attach(settings)
    except database.EmbeddedServerError as exc:
        err.print(f"[red]Cannot start the embedded PostgreSQL server[/]: {exc}")
        raise typer.Exit(3) from None
    out.print(f"[dim]database: {database.describe(settings)}[/]", soft_wrap=True)
    try:
        yield
    finally:
        hold.release()


def _prepare_database(settings: Settings, out: Console = console) -> None:
    try:
        created = migrations.ensure_database(settings.database_url)
        applied = migrations.migrate(settings.database_url)
    except psycopg.OperationalError as exc:
        err.print(f"[red]Cannot reach PostgreSQL[/] ({exc}).\n{_UNREACHABLE}")
        raise typer.Exit(3) from None
    if created:
        out.print("[dim]created database[/]")
    for name in applied:
        out.print(f"[dim]applied migration {name}[/]")


_UNREACHABLE = (
    "Start that server or point DATABASE_URL at one you can reach (e.g. a Supabase project's "
    "connection string; the role needs CREATEDB, or create the database first). Unset "
    "DATABASE_URL to use the local server on 127.0.0.1:5432 if one answers, else the embedded "
    "one (`wf db status`)."
)


@cli.command()
def migrate() -> None:
    """Create the database if needed and apply pending migrations."""
    settings = get_settings()
    with _database(settings):
        _prepare_database(settings)
    console.print("[green]database is up to date[/]")


@cli.command()
def validate(blueprint: Annotated[Path, typer.Argument(help="Blueprint JSON file")]) -> None:
    """Check a blueprint against the schema and the tool catalog."""
    try:
        parsed = validate_blueprint(_load_json(blueprint, "blueprint"))
    except InvalidBlueprint as exc:
        _print_issues(exc)
        raise typer.Exit(1) from None
    console.print(f"[green]valid[/]: {len(parsed.nodes)} nodes, {len(parsed.edges)} edges")


@dataclass
class _Progress:
    """Per-node display state fed by the runner's step observer."""

    blueprint: Blueprint
    run_id: UUID | None = None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def observe(self, run_id: UUID, node_id: str, event: str, detail: dict[str, Any]) -> None:
        if run_id != self.run_id:
            return
        row = self.rows.setdefault(node_id, {})
        status = "running" if event == "started" else event
        row["status"] = status
        if event == "started":
            row["t0"] = time.perf_counter()
        if "attempt" in detail:
            row["attempt"] = detail["attempt"]
        if "duration_ms" in detail:
            row["ms"] = detail["duration_ms"]
        elif event in ("failed", "retrying") and "t0" in row:
            row["ms"] = (time.perf_counter() - row["t0"]) * 1000
        if "error" in detail:
            row["note"] = detail["error"].get("message", "")
        if "wake_at" in detail:
            row["note"] = f"until {detail['wake_at']}"
        if detail.get("timed_out"):
            row["note"] = "timed out"

    def render(self) -> Table:
        table = Table(title=f"run {self.run_id}", expand=False)
        for column, justify in (
            ("node", "left"),
            ("type", "left"),
            ("status", "left"),
            ("attempt", "right"),
            ("ms", "right"),
            ("detail", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for node in self.blueprint.nodes:
            row = self.rows.get(node.id, {})
            status = row.get("status", "pending")
            ms = f"{row['ms']:.1f}" if "ms" in row else ""
            table.add_row(
                node.name or node.id,
                node.type,
                f"[{_STYLE.get(status, '')}]{status}[/]",
                str(row.get("attempt", "")),
                ms,
                str(row.get("note", ""))[:80],
            )
        return table


async def _run(
    settings: Settings, blueprint_data: Any, payload: Any, max_wait: float
) -> dict[str, Any]:
    blueprint = validate_blueprint(blueprint_data)
    progress = _Progress(blueprint)
    pool: Pool = await open_pool(
        settings.database_url,
        min_size=1,
        max_size=8,
        acquire_timeout=settings.db_acquire_timeout_seconds,
    )
    tools = ToolResources(settings, pool.connection)
    try:
        runner = EmbeddedRunner(pool, settings, tools=tools, observer=progress.observe)
        run_id, _ = await run_service.start(
            pool,
            EmbeddedDispatcher(),
            workflow_id=None,
            version=None,
            blueprint=blueprint_data,
            payload=payload,
            idempotency_key=None,
            owner=LOCAL_USER_ID,  # the CLI acts as the local user
            sandbox=settings.sandbox,  # whichever worker runs it, and its child runs
        )
        progress.run_id = run_id
        deadline = time.monotonic() + max_wait
        with Live(progress.render(), console=console, refresh_per_second=12) as live:
            refresher = asyncio.create_task(_refresh(live, progress))
            try:
                while True:
                    outcome = await runner.run_once(run_id, sandbox=settings.sandbox)
                    if outcome is not None and outcome.status != "waiting":
                        break
                    if outcome is None:
                        status, _ = await run_service.progress(pool, run_id, owner=LOCAL_USER_ID)
                        if status in runs_store.TERMINAL:
                            break
                        if time.monotonic() > deadline:
                            break
                    else:
                        assert outcome.wake_at is not None
                        if (outcome.wake_at - datetime.now(UTC)).total_seconds() > (
                            deadline - time.monotonic()
                        ):
                            break
                    await asyncio.sleep(settings.worker_poll_seconds)
            finally:
                refresher.cancel()
                live.update(progress.render())
        console.print()
        return await run_service.get(pool, run_id, owner=LOCAL_USER_ID)
    finally:
        await tools.aclose()
        await pool.close()


async def _refresh(live: Live, progress: _Progress) -> None:
    while True:
        live.update(progress.render())
        await asyncio.sleep(0.08)


def _sandboxed_nodes(run: dict[str, Any]) -> list[str]:
    return [
        node["id"]
        for node in run["nodes"]
        if isinstance(node.get("output"), dict) and node["output"].get("sandbox") is True
    ]


@cli.command()
def run(
    blueprint: Annotated[Path, typer.Argument(help="Blueprint JSON file")],
    payload: Annotated[Path | None, typer.Option(help="Trigger data JSON file")] = None,
    sandbox: Annotated[bool, typer.Option(help="Force every tool into sandbox mode")] = False,
    max_wait: Annotated[float, typer.Option(help="Seconds to stay for delays and waits")] = 120.0,
) -> None:
    """Execute a blueprint on the embedded runner and show each node's progress live.

    Exit code: 0 succeeded (or still waiting after --max-wait), 1 failed, 2 bad input,
    3 database unreachable.
    """
    settings = get_settings()
    load_settings(settings)
    if sandbox:
        settings = settings.model_copy(update={"sandbox": True})
    blueprint_data = _load_json(blueprint, "blueprint")
    payload_data = _load_json(payload, "payload") if payload else {}
    try:
        validate_blueprint(blueprint_data)
    except InvalidBlueprint as exc:
        _print_issues(exc)
        raise typer.Exit(2) from None
    with _database(settings):
        _prepare_database(settings)
        run_state = asyncio.run(_run(settings, blueprint_data, payload_data, max_wait))
    sandboxed = _sandboxed_nodes(run_state)
    if sandboxed:
        console.print(
            f"[yellow]sandbox mode[/] for {', '.join(sandboxed)}: no credentials "
            "configured (or --sandbox), so the request was recorded, not sent."
        )
    status = run_state["status"]
    if status not in runs_store.TERMINAL:
        console.print(
            f"[cyan]run {run_state['id']} is {status}[/] (until {run_state['wake_at']} or "
            "an event); `wf worker` or the API resumes it."
        )
        return
    if status != "succeeded":
        error = run_state["error"] or {}
        where = f" at node [bold]{error['node_id']}[/]" if error.get("node_id") else ""
        err.print(f"[red]run {status}[/]{where}: {error.get('code')}: {error.get('message')}")
        raise typer.Exit(1)
    console.print("[green]run succeeded[/]; output:")
    console.print_json(json.dumps(run_state["output"], default=str))


@cli.command()
def worker(
    drain: Annotated[bool, typer.Option(help="Exit when no run is claimable")] = False,
) -> None:
    """Run the embedded runner without the API: resumes unfinished runs, then keeps working.
    Logs go to stderr as the API's do (``LOG_FORMAT``)."""
    settings = get_settings()
    load_settings(settings)
    logs.configure(settings.log_format, settings.log_level)
    with _database(settings):
        _prepare_database(settings)
        asyncio.run(_work(settings, drain))


async def _work(settings: Settings, drain: bool) -> None:
    pool = await open_pool(
        settings.database_url,
        min_size=1,
        max_size=settings.db_pool_max,
        acquire_timeout=settings.db_acquire_timeout_seconds,
    )
    tools = ToolResources(settings, pool.connection)
    runner = EmbeddedRunner(pool, settings, tools=tools)
    try:
        if drain:
            console.print(f"worker {runner.worker_id} started")
            await runner.drain()
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Said once a signal stops it cleanly: whoever waits for this line may then send one.
        console.print(f"worker {runner.worker_id} started")
        await runner.start()
        scheduler = Scheduler(pool, EmbeddedDispatcher(), settings.scheduler_poll_seconds)
        if settings.run_scheduler:
            scheduler.start()
        pruner = Pruner(pool, settings)
        if settings.run_pruner:
            pruner.start()
        await stop.wait()
        console.print("stopping: finishing steps in flight…")
        await pruner.stop()
        await scheduler.stop()
        await runner.stop()
    finally:
        await tools.aclose()
        await pool.close()


credentials_cli = typer.Typer(help="Encryption keys of stored credentials.", no_args_is_help=True)
cli.add_typer(credentials_cli, name="credentials")


@credentials_cli.command("new-key")
def new_key() -> None:
    """Print a fresh Fernet key for CREDENTIALS_KEY (keep it secret; losing it loses every
    stored credential). To rotate: put the new key first, `KEY_NEW,KEY_OLD`, run rotate-key,
    then drop the old one."""
    print(vault.new_key())


@credentials_cli.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt every stored credential with the first CREDENTIALS_KEY.

    Exit code: 0 all rotated, 1 some could not be decrypted (left as they were), 2 no key.
    """
    settings = get_settings()
    if settings.credentials_key is None:
        err.print(f"[red]{vault.NEW_KEY_HINT}[/]")
        raise typer.Exit(2)
    _prepare_database(settings)
    counts = asyncio.run(_rotate(settings))
    console.print(f"re-encrypted {counts['rotated']} credential(s) with the first key")
    if counts["unreadable"]:
        err.print(
            f"[red]{counts['unreadable']} credential(s) do not decrypt with any configured "
            "key[/]; they were left as they were (was a key removed too early?)"
        )
        raise typer.Exit(1)


async def _rotate(settings: Settings) -> dict[str, int]:
    pool = await open_pool(
        settings.database_url,
        min_size=1,
        max_size=2,
        acquire_timeout=settings.db_acquire_timeout_seconds,
    )
    try:
        return await credential_service.rotate_key(pool, settings)
    finally:
        await pool.close()


@cli.command()
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Change nothing; print what would be deleted")
    ] = False,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            help="Apply the policy as if it were this time (ISO 8601, e.g. 2027-01-31; "
            "UTC unless it says otherwise), e.g. with --dry-run to see what goes next month",
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, max=10_000, help="Rows per batch (PRUNE_BATCH_SIZE)")
    ] = None,
) -> None:
    """Delete the finished runs, closed conversations, events and unused workflows that are
    past the retention policy, in batches (as the API's pruner does every
    PRUNE_INTERVAL_SECONDS), and print the rows per table.

    Exit code: 0 done, 1 stopped by PRUNE_PASS_SECONDS before the end, 3 database unreachable.
    """
    settings = get_settings()
    now = None
    if as_of is not None:
        now = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)
    with _database(settings):
        _prepare_database(settings)
        try:
            report = asyncio.run(_prune(settings, now, dry_run, batch_size))
        except psycopg.OperationalError as exc:
            err.print(f"[red]The database went away[/] ({exc}); run it again to go on")
            raise typer.Exit(3) from None
    table = Table(title="would be deleted (dry run)" if dry_run else "deleted")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name in retention_store.PRUNED_TABLES:
        table.add_row(name, str(report.rows.get(name, 0)))
    console.print(table)
    latencies = sorted(report.batch_seconds)
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else 0.0
    console.print(
        f"{report.total} rows in {report.batches} batches, {report.seconds:.2f} s"
        f" (batch median {p50:.1f} ms)"
        + (f"; {report.given_up} batches gave up (retried next pass)" if report.given_up else "")
    )
    if not report.complete:
        err.print("[yellow]stopped at PRUNE_PASS_SECONDS[/]: run it again to go on")
        raise typer.Exit(1)


async def _prune(
    settings: Settings, now: datetime | None, dry_run: bool, batch_size: int | None
) -> retention_service.PruneReport:
    pool = await _small_pool(settings)
    try:
        return await retention_service.prune(
            pool, settings, now=now, dry_run=dry_run, batch_size=batch_size
        )
    finally:
        await pool.close()


async def _small_pool(settings: Settings) -> Pool:
    try:
        return await open_pool(
            settings.database_url,
            min_size=1,
            max_size=2,
            acquire_timeout=settings.db_acquire_timeout_seconds,
        )
    except psycopg.OperationalError as exc:
        err.print(f"[red]Cannot reach PostgreSQL[/] ({exc}).\n{_UNREACHABLE}")
        raise typer.Exit(3) from None


users_cli = typer.Typer(help="A user's data: export it, erase it.", no_args_is_help=True)
cli.add_typer(users_cli, name="users")


@users_cli.command("export")
def users_export(
    user_id: Annotated[UUID, typer.Argument(help="The user's id")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")
    ] = None,
) -> None:
    """Write the user's export (the JSON document of GET /me/export) to stdout or a file."""
    settings = get_settings()
    with _database(settings, err):  # stdout is the document
        _prepare_database(settings, err)
        asyncio.run(_export(settings, user_id, output))


async def _export(settings: Settings, user_id: UUID, output: Path | None) -> None:
    pool = await _small_pool(settings)
    try:
        chunks = await account_data_service.export(pool, user_id)
        if output is None:
            async for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        with output.open("wb") as sink:
            async for chunk in chunks:
                sink.write(chunk)
    finally:
        await pool.close()


@users_cli.command("erase")
def users_erase(
    user_id: Annotated[UUID, typer.Argument(help="The user's id")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Erase everything the user owns (as DELETE /me/data): stop their keys, numbers,
    connections, schedules and unfinished runs, then delete their workflows, runs, logs,
    conversations, events and profile. Safe to repeat; `wf users export` first.

    Exit code: 0 erased, 1 not confirmed, 3 database unreachable.
    """
    if not yes and not typer.confirm(f"Erase everything user {user_id} owns, for good?"):
        raise typer.Exit(1)
    settings = get_settings()
    with _database(settings):
        _prepare_database(settings)
        result = asyncio.run(_erase(settings, user_id))
    table = Table(title="deleted")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in sorted(result["deleted"].items()):
        table.add_row(name, str(rows))
    console.print(table)
    console.print(f"erased user {user_id}", soft_wrap=True)
    console.print(
        f"cancelled {result['cancelled_runs']} unfinished run(s), deactivated "
        f"{result['deactivated_workflows']} workflow(s)"
    )


async def _erase(settings: Settings, user_id: UUID) -> dict[str, Any]:
    pool = await _small_pool(settings)
    try:
        return await account_data_service.erase(pool, _dispatcher(settings), settings, user_id)
    finally:
        await pool.close()


def _dispatcher(settings: Settings) -> Dispatcher:
    """The engine's dispatcher, to stop a user's runs on Inngest too."""
    if settings.engine == "embedded":
        return EmbeddedDispatcher()
    from blueprint_engine.workflows.runners import inngest as inngest_runner

    return inngest_runner.InngestDispatcher(inngest_runner.make_client(settings))


@db_cli.command("status")
def db_status() -> None:
    """Say which PostgreSQL is used: DATABASE_URL if set, else the local server on
    127.0.0.1:5432 if it lets us in, else the embedded one (started when needed).

    Exit code: 0 usable, 3 DATABASE_URL's server unreachable.
    """
    settings = get_settings()
    server = database.embedded_server(settings)
    if server is None:
        if not database.answers(settings.database_url):
            err.print(
                f"[red]Cannot reach PostgreSQL[/] at {database.describe(settings)}.\n"
                + _UNREACHABLE
            )
            raise typer.Exit(3)
        console.print(f"database: {database.describe(settings)}", soft_wrap=True)
        return
    if not server.running():
        state = "not running: started when a command or the API needs it"
    elif server.kept():
        state = "running, kept up by `wf db start` until `wf db stop`"
    elif server.in_use():
        state = "running while processes use it"
    else:
        state = "running, used by no process: `wf db stop` stops it"
    console.print(f"database: {database.describe(settings)} ({state})", soft_wrap=True)


@db_cli.command("url")
def db_url() -> None:
    """Print the database URL, e.g. ``psql "$(wf db url)"`` (the embedded server must be
    running: ``wf db start``)."""
    settings = get_settings()
    typer.echo(settings.database_url)
    server = database.embedded_server(settings)
    if server is not None and not server.running():
        err.print("[yellow]the embedded server is not running[/]: `wf db start` starts it")


@db_cli.command("start")
def db_start() -> None:
    """Start the embedded server and keep it up until ``wf db stop`` (otherwise it runs only
    while a command or the API uses it)."""
    settings = get_settings()
    server = database.embedded_server(settings)
    if server is None:
        err.print(f"nothing to start: the database is {database.describe(settings)}")
        raise typer.Exit(1)
    try:
        server.keep()
    except database.EmbeddedServerError as exc:
        err.print(f"[red]Cannot start the embedded PostgreSQL server[/]: {exc}")
        raise typer.Exit(3) from None
    console.print(
        f"[green]running[/]: {database.describe(settings)}, until `wf db stop`", soft_wrap=True
    )
    typer.echo(settings.database_url)


@db_cli.command("stop")
def db_stop() -> None:
    """Stop the embedded server now, or, while processes use it, when the last one exits."""
    settings = get_settings()
    server = database.embedded_server(settings)
    if server is None:
        err.print(f"nothing to stop: the database is {database.describe(settings)}")
        raise typer.Exit(1)
    try:
        stopped = server.unkeep()
    except database.EmbeddedServerError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    if stopped:
        console.print("stopped")
    else:
        console.print("in use: it stops when the last process using it exits")


def main() -> None:
    """Entry point of the ``wf`` script."""
    cli()


if __name__ == "__main__":
    main()
