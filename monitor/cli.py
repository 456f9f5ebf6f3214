"""The ``monitor`` command line. Thin: each command parses its arguments and calls one library function.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config.
"""

from __future__ import annotations

import asyncio
import enum
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from monitor import __version__
from monitor.config import Settings, config_path, load_config, secret_values
from monitor.errors import ConfigError, MonitorError
from monitor.log import configure_logging
from monitor.schema import encode

app = typer.Typer(
    help="warwatch: a streaming monitor for war reporting on Telegram, X, news feeds and article corpora.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)


class Role(enum.StrEnum):
    """What ``monitor run`` runs."""

    all = "all"
    collectors = "collectors"
    workers = "workers"


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="config file (default: $WARWATCH_CONFIG, else ./config.yaml)"),
]


def _fail(exc: MonitorError) -> typer.Exit:
    if isinstance(exc, ConfigError):
        err.print(f"[bold red]config error[/bold red] in {exc.source}:")
        for path, message in exc.problems:
            err.print(f"  [bold]{escape(path)}[/bold]: {escape(message)}", highlight=False, markup=True)
    else:
        err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False)
    return typer.Exit(exc.exit_code)


def _settings(config: Path | None) -> Settings:
    """Load config and set up logging; a config error ends the command before anything starts."""
    try:
        settings = load_config(config)
    except ConfigError as exc:
        raise _fail(exc) from None
    configure_logging(settings.log, secrets=secret_values(settings))
    return settings


@app.command()
def run(
    config: ConfigOption = None,
    once: Annotated[bool, typer.Option("--once", help="ingest, drain the queues, then exit")] = False,
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            help="all: everything; collectors: only the collectors; workers: normalizer, alerter, notifier, "
            "trimmer and timers (run several, on other machines, against one Redis)",
        ),
    ] = Role.all,
    consumer: Annotated[
        str | None,
        typer.Option("--consumer", help="this process's consumer name in the groups (default: the host name)"),
    ] = None,
) -> None:
    """Run the daemon: embedded Redis, collectors, normalizer, alerter, notifier, metrics."""
    from monitor.daemon import run_daemon  # noqa: PLC0415 - keeps `monitor --help` fast

    settings = _settings(config)
    try:
        asyncio.run(run_daemon(settings, once=once, role=role.value, consumer=consumer))
    except MonitorError as exc:
        raise _fail(exc) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise typer.Exit(130) from None


@app.command()
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(help="files or folders of .txt/.md/.html/.jsonl articles and Telegram export result.json files"),
    ],
    config: ConfigOption = None,
) -> None:
    """Push article files into the raw stream, with a progress bar."""
    from monitor.collectors.corpus import ingest as ingest_corpus  # noqa: PLC0415

    settings = _settings(config)
    try:
        report = asyncio.run(ingest_corpus(settings, paths, progress=sys.stderr.isatty()))
    except MonitorError as exc:
        raise _fail(exc) from None
    err.print(
        f"{report.files} file(s): {report.published} new item(s), {report.duplicates} already seen, "
        f"{len(report.rejected)} rejected, {len(report.truncated)} truncated"
    )
    for bad in report.rejected:
        err.print(f"  [yellow]skipped[/yellow] {bad.path}: {bad.reason}", highlight=False)


@app.command()
def match(
    text: Annotated[str, typer.Argument(help="the text to test, or - to read stdin")] = "-",
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list of alerts")] = False,
) -> None:
    """Run the normalizer and the rules on one text, offline (no Redis), and print the alerts."""
    from monitor.alerting.engine import AlertEngine  # noqa: PLC0415
    from monitor.alerting.offline import normalize_text  # noqa: PLC0415
    from monitor.notify.console import explain_lines, render_line  # noqa: PLC0415

    settings = _settings(config)
    body = sys.stdin.read() if text == "-" else text
    item = normalize_text(body, settings)
    alerts = AlertEngine(settings.rules).evaluate(item)
    if as_json:
        typer.echo("[" + ",".join(encode(a).decode() for a in alerts) + "]")
        return
    out = Console(highlight=False, soft_wrap=True)
    if not alerts:
        out.print("no rule matched")
    for alert in alerts:
        out.print(render_line(alert))
        for line in explain_lines(alert, item.text):
            out.print(line, markup=False)


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate the config; exit 0, or 2 with every error and its field path."""
    try:
        settings = load_config(config)
    except ConfigError as exc:
        raise _fail(exc) from None
    where = config_path(config) or "(defaults)"
    typer.echo(f"{where}: ok ({len(settings.rules)} rule(s), redis {_redis_label(settings)})")


@app.command()
def status(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show stream lengths, each group's lag and pending count, dead letters and the last item per channel."""
    from monitor.status import read_status, render_status  # noqa: PLC0415

    settings = _settings(config)
    try:
        state = asyncio.run(read_status(settings))
    except MonitorError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(state.to_dict(), default=str, indent=2))
    else:
        render_status(state, Console())


telegram_app = typer.Typer(
    help="Telegram (Telethon) account: log in, and push a channel's history.", no_args_is_help=True
)
app.add_typer(telegram_app, name="telegram")


@telegram_app.command("login")
def telegram_login(config: ConfigOption = None) -> None:
    """Log in interactively (phone, code, 2FA password) and save the SQLite session file."""
    from monitor.collectors.telegram import login  # noqa: PLC0415 - Telethon only for this command

    settings = _settings(config)
    try:
        typer.echo(asyncio.run(login(settings.collectors.telegram)))
    except MonitorError as exc:
        raise _fail(exc) from None


@telegram_app.command("backfill")
def telegram_backfill(
    channel: Annotated[str, typer.Argument(help="username, t.me link or numeric id")],
    since: Annotated[datetime, typer.Option("--since", help="oldest date to fetch (UTC), e.g. 2023-05-01")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="at most this many messages")] = None,
    config: ConfigOption = None,
) -> None:
    """Push a channel's history since a date into the pipeline, with a progress bar."""
    from monitor.collectors.telegram import backfill_command  # noqa: PLC0415

    settings = _settings(config)
    when = since if since.tzinfo else since.replace(tzinfo=UTC)
    try:
        count = asyncio.run(backfill_command(settings, channel, since=when, limit=limit, progress=sys.stderr.isatty()))
    except MonitorError as exc:
        raise _fail(exc) from None
    err.print(f"{count} new item(s) from {channel}")


dead_app = typer.Typer(help="The dead-letter stream: entries that failed for good, and why.", no_args_is_help=True)
app.add_typer(dead_app, name="dead")


@dead_app.command("list")
def dead_list(
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many, oldest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List dead letters: where they came from, the error, and how often they were delivered."""
    from monitor.bus.dead import list_dead  # noqa: PLC0415
    from monitor.bus.keys import Keys  # noqa: PLC0415
    from monitor.bus.redis import open_redis  # noqa: PLC0415

    settings = _settings(config)

    async def read() -> list[Any]:
        async with open_redis(settings.redis) as redis:
            return await list_dead(redis, Keys(settings.redis.key_prefix), limit=limit)

    try:
        entries = asyncio.run(read())
    except MonitorError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
        return
    out = Console(highlight=False, soft_wrap=True)
    if not entries:
        out.print("no dead letters")
    for e in entries:
        out.print(f"[bold]{e.id}[/bold] {e.stage} ({e.stream} {e.entry_id}, {e.deliveries} deliveries, {e.failed_at})")
        out.print(f"  [red]{escape(e.error)}[/red]", markup=True)


@dead_app.command("retry")
def dead_retry(
    ids: Annotated[list[str] | None, typer.Argument(help="dead-letter ids (from `monitor dead list`)")] = None,
    all_entries: Annotated[bool, typer.Option("--all", help="retry every dead letter")] = False,
    config: ConfigOption = None,
) -> None:
    """Send dead letters back to the stream they came from, to be processed again."""
    from monitor.bus.dead import retry_dead  # noqa: PLC0415
    from monitor.bus.keys import Keys  # noqa: PLC0415
    from monitor.bus.redis import open_redis  # noqa: PLC0415

    if not ids and not all_entries:
        err.print("give dead-letter ids, or --all")
        raise typer.Exit(2)
    settings = _settings(config)

    async def retry() -> list[str]:
        async with open_redis(settings.redis) as redis:
            return await retry_dead(redis, Keys(settings.redis.key_prefix), None if all_entries else ids)

    try:
        done = asyncio.run(retry())
    except MonitorError as exc:
        raise _fail(exc) from None
    err.print(f"{len(done)} dead letter(s) sent back for another try")


@app.command()
def tail(
    items: Annotated[bool, typer.Option("--items", help="follow the items stream instead of alerts")] = False,
    alerts: Annotated[bool, typer.Option("--alerts", help="follow the alerts stream (the default)")] = False,
    rule: Annotated[list[str] | None, typer.Option("--rule", help="only these rules (repeatable)")] = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="only these sources (repeatable)")] = None,
    channel: Annotated[list[str] | None, typer.Option("--channel", help="only these channels (repeatable)")] = None,
    last: Annotated[int, typer.Option("--last", min=0, help="first show this many recent entries")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    config: ConfigOption = None,
) -> None:
    """Follow alerts (or items) live in the terminal; Ctrl-C to stop. Reads only: takes nothing from the pipeline."""
    from monitor.bus.keys import Keys  # noqa: PLC0415
    from monitor.bus.redis import open_redis  # noqa: PLC0415
    from monitor.tail import StreamKind, TailFilter, follow, printer  # noqa: PLC0415

    if items and alerts:
        err.print("give --alerts or --items, not both")
        raise typer.Exit(2)
    if items and rule:
        err.print("--rule filters alerts; it cannot be used with --items")
        raise typer.Exit(2)
    settings = _settings(config)
    only = TailFilter(rules=rule or (), sources=source or (), channels=channel or ())
    show = printer(Console(highlight=False, soft_wrap=True), as_json=as_json)

    async def watch() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):  # stop between reads: at most one block (1 s) later
            loop.add_signal_handler(signum, stop.set)
        async with open_redis(settings.redis) as redis:
            kind: StreamKind = "items" if items else "alerts"
            await follow(redis, Keys(settings.redis.key_prefix), kind, show, only=only, last=last, stop=stop)

    try:
        asyncio.run(watch())
    except MonitorError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


class ExportFormat(enum.StrEnum):
    """What ``monitor export`` writes."""

    jsonl = "jsonl"
    csv = "csv"
    geojson = "geojson"


class TimeBasis(enum.StrEnum):
    """Which time ``--since``/``--until`` apply to."""

    published = "published"
    collected = "collected"


def _archive_dir(settings: Settings) -> Path:
    return settings.archive.dir or settings.redis.data_dir / "archive"


@app.command()
def search(
    query: Annotated[
        str, typer.Argument(help='words; "a phrase"; prefix*; case forms of uk/ru words are found; "" for all')
    ],
    since: Annotated[
        str | None, typer.Option("--since", help="from: 2024-02-17, 2024-02-17T06:00Z, or 36h / 7d ago")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="before this time (same forms)")] = None,
    place: Annotated[list[str] | None, typer.Option("--place", help="items naming this place (repeatable)")] = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="only these sources (repeatable)")] = None,
    channel: Annotated[list[str] | None, typer.Option("--channel", help="only these channels (repeatable)")] = None,
    story: Annotated[
        str | None, typer.Option("--story", help="only this story cluster's items (an alert's cluster_id)")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 20,
    by: Annotated[TimeBasis, typer.Option("--by", help="time the bounds apply to")] = TimeBasis.published,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Search the archive of every item (full text, best matches first; `--story ID ""`: a story's posts)."""
    from monitor.archive import hits_json, parse_time, render_hits  # noqa: PLC0415
    from monitor.archive import search as search_archive  # noqa: PLC0415

    settings = _settings(config)
    try:
        hits = search_archive(
            _archive_dir(settings),
            query,
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
            place=place or None,
            source=source or None,
            channel=channel or None,
            limit=limit,
            time_field=by.value,
            story=story,
        )
    except MonitorError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(hits_json(hits))
    else:
        render_hits(hits, Console(highlight=False, soft_wrap=True))


@app.command()
def export(
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl, csv or geojson (one point per place)")
    ] = ExportFormat.jsonl,
    since: Annotated[str | None, typer.Option("--since", help="from: 2024-02-17, or 7d ago")] = None,
    until: Annotated[str | None, typer.Option("--until", help="before this time")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")] = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="only these sources (repeatable)")] = None,
    channel: Annotated[list[str] | None, typer.Option("--channel", help="only these channels (repeatable)")] = None,
    by: Annotated[TimeBasis, typer.Option("--by", help="time the bounds apply to")] = TimeBasis.published,
    excel_safe: Annotated[bool, typer.Option("--excel-safe", help="csv: defuse cells starting with = + - @")] = False,
    config: ConfigOption = None,
) -> None:
    """Write archived items out as JSON lines, CSV, or GeoJSON for QGIS and web maps."""
    from monitor.archive import export as export_archive  # noqa: PLC0415
    from monitor.archive import export_file, parse_time  # noqa: PLC0415

    settings = _settings(config)
    options: dict[str, Any] = {
        "fmt": fmt.value,
        "since": parse_time(since) if since else None,
        "until": parse_time(until) if until else None,
        "time_field": by.value,
        "source": source or None,
        "channel": channel or None,
        "excel_safe": excel_safe,
    }
    try:
        if output is None:
            count = export_archive(_archive_dir(settings), sys.stdout, **options)
        else:
            count = export_file(_archive_dir(settings), output, **options)
    except MonitorError as exc:
        raise _fail(exc) from None
    err.print(f"{count} item(s) exported" + (f" to {output}" if output else ""))


archive_app = typer.Typer(help="The archive of every item: files and search index.", no_args_is_help=True)
app.add_typer(archive_app, name="archive")


@archive_app.command("reindex")
def archive_reindex(
    prune: Annotated[
        bool, typer.Option("--prune", help="drop index rows whose item is in no file (archiver stopped)")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Rebuild the search index from the archive files (safe while the daemon runs, without --prune)."""
    from monitor.archive import rebuild_index  # noqa: PLC0415

    settings = _settings(config)
    try:
        stats = rebuild_index(_archive_dir(settings), prune=prune)
    except MonitorError as exc:
        raise _fail(exc) from None
    err.print(
        f"index rebuilt in {stats.seconds:.1f} s: {stats.files} file(s), {stats.lines} line(s), {stats.rows} item(s) "
        f"indexed, {stats.duplicates} duplicate line(s), {stats.invalid} invalid, {len(stats.damaged)} damaged "
        f"region(s), {stats.pruned} pruned"
    )


notify_app = typer.Typer(help="Notification sinks (Apprise).", no_args_is_help=True)
app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def notify_test(
    sinks: Annotated[list[str] | None, typer.Argument(help="sink names (default: every sink)")] = None,
    config: ConfigOption = None,
) -> None:
    """Send a sample alert to sinks now (no outbox, no retry) and say which accepted it."""
    from monitor.notify.probe import probe_sinks  # noqa: PLC0415

    settings = _settings(config)
    if not settings.notify.sinks:
        err.print("no sinks configured (notify.sinks)")
        raise typer.Exit(2)
    try:
        results = asyncio.run(probe_sinks(settings.notify, sinks or ()))
    except ValueError as exc:
        err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    out = Console(highlight=False, soft_wrap=True)
    for result in results:
        if result.ok:
            out.print(f"[green]ok[/green]     {escape(result.sink)}")
        else:
            out.print(f"[red]failed[/red] {escape(result.sink)}: {escape(result.error)}")
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _redis_label(settings: Settings) -> str:
    from monitor.bus.redis import redact_url  # noqa: PLC0415

    return "embedded" if settings.redis.embedded else redact_url(settings.redis.url.get_secret_value())


def main() -> None:
    """Console-script entry point."""
    app()
