"""The ``sendcore`` command: run the demo workload, check a settings file, serve the HTTP API, manage tokens."""

from __future__ import annotations

import sys
from typing import Any, Union

import click
import msgspec

__all__ = ["main"]

#: Exit status of ``check-config`` for an invalid file (2, like click's usage errors).
EXIT_BAD_CONFIG = 2


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sendcore")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """sendcore: a headless scheduling and send-rate engine for SMS, email and push."""


@main.command()
def version() -> None:
    """Print sendcore's version."""
    click.echo(f"sendcore {_version()}")


@main.command()
@click.option("--recipients", "-n", type=click.IntRange(min=10), default=200_000, show_default=True,
              help="Profiles in the demo population.")
@click.option("--days", "-d", type=click.IntRange(min=1, max=30), default=4, show_default=True,
              help="Virtual days of flows, OTP and campaigns.")
@click.option("--seed", "-s", type=int, default=7, show_default=True,
              help="Seed of the population, the workload and the sandbox network.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of tables.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar on stderr (default: when stderr is a terminal and not --json).")
@click.option("--journal", "journal", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Journal directory to keep (new or empty); default: a temporary one, removed afterwards.")
@click.option("--no-journal", is_flag=True, help="Keep everything in memory (what a crash would lose).")
def demo(recipients: int, days: int, seed: int, as_json: bool, progress: Union[bool, None],
         journal: Union[str, None], no_journal: bool) -> None:
    """Run a Black-Friday week for a mid-size brand on a virtual clock and report what left, and when.

    The engine journals every input (durability on, as in production); the
    report says what the journal wrote and cost. SIGTERM or Ctrl-C stops the
    run cleanly: the engine closes and the journal is flushed.
    """
    from .demo import DemoConfig, DemoInterrupted, print_report, run_demo

    if progress is None:
        progress = not as_json and sys.stderr.isatty()
    if no_journal and journal is not None:
        raise click.UsageError("give --journal PATH or --no-journal, not both")
    config = DemoConfig(recipients=recipients, days=days, seed=seed, progress=progress,
                        journal="" if no_journal else journal)
    try:
        result = run_demo(config)
    except DemoInterrupted as exc:
        where = f"; the journal in {exc.journal} is flushed" if exc.journal and journal else ""
        click.echo(f"demo {exc}{where}", err=True)
        sys.exit(128 + exc.signum)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(msgspec.json.encode(result).decode())
    else:
        print_report(result, _console())


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
def check_config(file: str) -> None:
    """Check FILE as the engine would, against the installed plugins; print "ok" and a summary, or each problem (exit 2).

    Loads the settings, the installed plugins and their providers (with their
    options), applies [providers.X] and builds the core, exactly as an engine
    starting with FILE does; then reports channels served by several
    providers with no choice made and a [channels.X] provider that is not
    registered. Warnings (such as an unset environment variable a provider
    reads at start) do not fail the check.
    """
    from .assembly import check
    from .errors import ConfigError
    from .settings import Settings

    try:
        settings = Settings.from_toml(file)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    report = check(settings)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not report.ok:
        for error in report.errors:
            click.echo(f"error: {file}: {error}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    click.echo("ok")
    console = _console()
    console.print(_summary(settings))
    console.print(_providers_table(report))


def _providers_table(report: Any) -> Any:
    """Which provider each channel's sends go to, and who registered it."""
    from rich.table import Table

    table = Table(title="channels and providers")
    for col in ("channel", "provider", "plugin", "serves"):
        table.add_column(col)
    for channel, provider in report.channels.items():
        plugin, serves = report.providers.get(provider, ("", ()))
        table.add_row(channel, provider or "none", plugin, ", ".join(serves))
    return table


@main.group()
def journal() -> None:
    """Inspect and mend a journal directory ([journal] path) without starting an engine."""


def _bytes_progress(label: str) -> Any:
    """A rich progress bar over bytes read, on stderr when it is a terminal; else no-op callbacks."""
    import contextlib

    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    @contextlib.contextmanager
    def bar() -> Any:
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TimeRemainingColumn(), console=Console(stderr=True), transient=True) as p:
            task = p.add_task(label, total=None)
            yield lambda done, total: p.update(task, completed=done, total=total)

    return bar()


def _journal_error(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _state_table(title: str, state: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=title)
    for col in ("pending", "scheduled", "queued", "in flight", "submitted", *sorted(state["final"])):
        t.add_column(col, justify="right")
    t.add_row(*(f"{state[k]:,}" for k in ("pending", "scheduled", "queued", "in_flight", "submitted")),
              *(f"{state['final'][k]:,}" for k in sorted(state["final"])))
    return t


def _segments_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"Journal {report['path']}: {report['bytes']:,} bytes")
    for col in ("file", "bytes", "first seq", "frames", "note"):
        t.add_column(col, justify="left" if col in ("file", "note") else "right")
    snap = report["snapshot"]
    if snap is not None:
        t.add_row(snap["file"], f"{snap['bytes']:,}", "", "",
                  f"snapshot: {snap['pending']:,} pending, {snap['age_seconds']:,.0f} s old")
    for r in report["segments"]:
        t.add_row(r["segment"], f"{r['bytes']:,}", "" if r["first_seq"] is None else f"{r['first_seq']:,}",
                  f"{r['frames']:,}", r["torn"] or "")
    return t


@journal.command("check")
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
def journal_check(path: str) -> None:
    """Verify every frame and the snapshot of PATH, replay it read-only and print the state.

    Exit 0 when the journal is good (a torn final frame is reported: the next
    start truncates it), 1 when it is damaged. Changes no file and takes no
    lock, so it may run beside a live engine. Replay asks the installed
    plugins' hooks (carrier lookup, time zones, policies) as a restart would.
    """
    from .errors import JournalError
    from .journal.commands import check

    try:
        with _bytes_progress("replaying") as progress:
            report = check(path, progress)
    except JournalError as exc:
        _journal_error(exc)
    console = _console()
    console.print(_segments_table(report))
    frames = report["frames"]
    console.print("frames: " + (", ".join(f"{k} {v:,}" for k, v in sorted(frames.items())) or "none")
                  + f"; replayed {report['state']['frames_replayed']:,} in {report['state']['seconds']:.2f} s")
    console.print(_state_table("State after replay", report["state"]))
    for t in report["torn"]:
        console.print(f"[yellow]warning[/]: {t}: the next start truncates it (a crash during a write)")
    console.print("ok")


@journal.command("stats")
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
@click.option("--replay/--no-replay", default=True, show_default=True,
              help="Replay read-only to count pending sends by state (--no-replay: files only, quick).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def journal_stats(path: str, replay: bool, as_json: bool) -> None:
    """Segments, sizes, the snapshot, bytes per pending send and pending sends by state of PATH."""
    from .errors import JournalError
    from .journal.commands import stats

    try:
        with _bytes_progress("reading") as progress:
            report = stats(path, replay, progress)
    except JournalError as exc:
        _journal_error(exc)
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
        return
    console = _console()
    console.print(_segments_table(report))
    if replay:
        console.print(_state_table("Pending sends by state", report["state"]))
        per = report["bytes_per_pending"]
        console.print(f"journal bytes per pending send: {per:,.0f}" if per else "no pending send")


@journal.command("repair")
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def journal_repair(path: str, yes: bool) -> None:
    """Cut PATH after its last good frame: truncate the damaged segment, delete the segments after it.

    Takes the journal's lock (refused while an engine runs on it). Exit 0 when
    repaired or nothing needed it, 1 when declined or impossible.
    """
    import os
    from pathlib import Path

    from .errors import JournalError
    from .journal import files
    from .journal.commands import apply_repair, plan_repair

    if not Path(path).is_dir():
        _journal_error(JournalError(f"{path}: no such journal directory"))
    try:
        lock_fd = files.lock(Path(path))  # first: no plan is made while an engine writes
    except JournalError as exc:
        _journal_error(exc)
    try:
        _repair(path, yes, lock_fd, plan_repair, apply_repair)
    finally:
        os.close(lock_fd)


@journal.command("compact")
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a sentence.")
def journal_compact(path: str, as_json: bool) -> None:
    """Recover PATH and write a snapshot of it, so the next start replays nothing.

    Run it with the sendcore version that wrote the journal, before upgrading:
    a journal's tail replays only with the version that wrote it, a snapshot
    loads in later ones. Takes the journal's lock (refused while an engine
    runs on it); sends nothing. Exit 0 when the snapshot is written.
    """
    from .errors import JournalError
    from .journal.commands import compact

    try:
        with _bytes_progress("replaying") as progress:
            report = compact(path, progress)
    except JournalError as exc:
        _journal_error(exc)
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    elif report["written"]:
        click.echo(f"{report['path']}: {report['pending']:,} pending sends in {report['snapshot']} "
                   f"(replayed {report['frames_replayed']:,} frames, {report['seconds']:.1f} s); "
                   "the next start replays nothing")
    else:
        click.echo(f"{report['path']}: already compact ({report['snapshot']} covers every frame)")
    if not report["written"] and report["frames_replayed"]:
        sys.exit(1)


def _repair(path: str, yes: bool, lock_fd: int, plan_repair: Any, apply_repair: Any) -> None:
    from .errors import JournalError

    try:
        plan = plan_repair(path)
    except JournalError as exc:
        _journal_error(exc)
    if not plan.needed:
        click.echo("nothing to repair: every frame is good")
        return
    click.echo(f"damage: {plan.reason}")
    if plan.truncate:
        click.echo(f"will truncate {plan.truncate} at offset {plan.offset:,} ({plan.bytes_cut:,} bytes)")
    for name in plan.delete:
        click.echo(f"will delete {name}")
    click.echo(f"frames lost: at least {plan.frames_lost:,}")
    if not yes and not click.confirm("repair?", default=False):
        click.echo("nothing changed")
        sys.exit(1)
    try:
        apply_repair(path, plan, lock_fd)
    except JournalError as exc:
        _journal_error(exc)
    click.echo("repaired")


@main.command()
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=str), required=True,
              help="The settings file (TOML), with an optional [service] table.")
@click.option("--host", default=None, help="Address to listen on (default: [service] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default: [service] port, 8787; 0 picks a free one).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Log lines on stderr: text, or one JSON object a line.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.option("--check", is_flag=True, help="Validate the configuration (settings, plugins, tokens file) and exit.")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=str), default=None, hidden=True,
              help="Write the URL listened on to this file once serving (for supervisors and tests).")
def serve(config: str, host: Union[str, None], port: Union[int, None], log_format: str, log_level: str,
          check: bool, ready_file: Union[str, None]) -> None:
    """Run the engine as an HTTP service: submit, cancel, outcomes, delivery reports, metrics, status page.

    SIGTERM or SIGINT stops it gracefully: no new connections, in-flight
    requests and provider calls finish (or time out after [service]
    shutdown_grace), the journal is fsynced, exit 0. See docs/service.md.
    """
    from .assembly import check as check_assembly
    from .errors import ConfigError, SendcoreError
    from .settings import Settings

    try:
        settings = Settings.from_toml(config)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    if check:
        report = check_assembly(settings)
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        problems = [f"{config}: {e}" for e in report.errors]
        try:
            from .service.tokens import TokenStore

            store = TokenStore(settings.service.tokens_file)
            live = sum(1 for r in store.list() if r.revoked is None)
            if settings.service.require_tokens and not live:
                click.echo(f"warning: {settings.service.tokens_file}: no live token; create one with "
                           f"`sendcore token create --config {config} --scope submit,read`", err=True)
        except (ValueError, OSError) as exc:
            problems.append(f"service.tokens_file: {exc}")
        if problems:
            for p in problems:
                click.echo(f"error: {p}", err=True)
            sys.exit(EXIT_BAD_CONFIG)
        s = settings.service
        click.echo(f"ok: would listen on http://{host or s.host}:{s.port if port is None else port}, "
                   f"journal {settings.journal.path or 'in memory'} (fsync {settings.journal.fsync}), "
                   f"state in {s.state_dir}")
        return
    from .engine import Engine
    from .service import serve as run_service
    from .service.logs import setup_logging

    setup_logging(log_format, log_level)
    s = settings.service
    try:
        code = Engine.run(run_service(settings, host or s.host, s.port if port is None else port,
                                      ready_file=ready_file))
    except (SendcoreError, OSError) as exc:  # a bad plugin option, a journal held by another engine, a busy port
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


@main.group()
def token() -> None:
    """Create, list and revoke the service's bearer tokens ([service] tokens_file)."""


def _token_store(config: str) -> Any:
    from .errors import ConfigError
    from .service.tokens import TokenStore
    from .settings import Settings

    try:
        settings = Settings.from_toml(config)
        return TokenStore(settings.service.tokens_file)
    except (ConfigError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_CONFIG)


_config_option = click.option("--config", "config", type=click.Path(dir_okay=False, path_type=str), required=True,
                              help="The settings file whose [service] tokens_file holds the tokens.")


@token.command("create")
@_config_option
@click.option("--scope", "scope", required=True, help="Comma-separated scopes: submit, read, admin.")
@click.option("--name", default="", help="A name to list and revoke it by (default: its id).")
def token_create(config: str, scope: str, name: str) -> None:
    """Create a token and print it once; only its salted hash is stored."""
    store = _token_store(config)
    try:
        secret, record = store.create([s.strip() for s in scope.split(",") if s.strip()], name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(secret)
    click.echo(f"token {record.name!r} ({record.id}) with scopes {', '.join(record.scopes)} stored in "
               f"{store.path}; it is shown only now", err=True)


@token.command("list")
@_config_option
def token_list(config: str) -> None:
    """List the tokens: id, name, scopes, created, revoked (never a secret)."""
    import time

    store = _token_store(config)
    for r in store.list():
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created))
        revoked = time.strftime("revoked %Y-%m-%d %H:%M", time.gmtime(r.revoked)) if r.revoked else "live"
        click.echo(f"{r.id}  {r.name}  {','.join(r.scopes)}  created {when}  {revoked}")


@token.command("revoke")
@_config_option
@click.argument("name_or_id")
def token_revoke(config: str, name_or_id: str) -> None:
    """Revoke the token with this id or name (a running service stops taking it within a second)."""
    store = _token_store(config)
    hits = store.revoke(name_or_id)
    if not hits:
        click.echo(f"error: no live token has the id or name {name_or_id!r}", err=True)
        sys.exit(1)
    for r in hits:
        click.echo(f"revoked {r.id} ({r.name})")


def _console() -> Any:
    """A rich console on stdout; wide enough for the report's tables when stdout is not a terminal."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _summary(settings: Any) -> Any:
    """A table of the effective settings: what a reader wants to confirm at a glance."""
    from rich.table import Table

    table = Table(title="sendcore settings", show_header=True)
    table.add_column("setting")
    table.add_column("value")
    add = table.add_row
    add("default_timezone", settings.default_timezone)
    add("jurisdictions", ", ".join(settings.jurisdictions) or "none")
    add("max_pending", f"{settings.max_pending:,}")
    add("retention", _dur(settings.retention))
    add("late_local", settings.late_local)
    for name in settings.channel_names:
        ch = settings.channel(name)
        quiet = f"{ch.quiet_hours.start}-{ch.quiet_hours.end}" if ch.quiet_hours is not None else "none"
        add(f"channels.{name}",
            f"smart sending {_dur(ch.smart_sending_window) if ch.smart_sending_window else 'off'}, "
            f"quiet hours {quiet}, ramp {_dur(ch.ramp)}" + (f", provider {ch.provider}" if ch.provider else ""))
    es = settings.error_segment
    add("error_segment", f"{_dur(es.window)} for {', '.join(es.origins)}"
        + (f" on {', '.join(es.channels)}" if es.channels else ""))
    for cap in settings.frequency_caps:
        window = cap.calendar or _dur(cap.window)
        scope = ", ".join(filter(None, [cap.channel or "all channels", "/".join(cap.origins),
                                        ("tags " + "/".join(cap.tags)) if cap.tags else "",
                                        ("in " + "/".join(cap.countries + cap.regions)) if cap.countries or cap.regions else ""]))
        add(f"frequency_caps{('.' + cap.name) if cap.name else ''}", f"at most {cap.max} per {window} ({scope}), {cap.action}")
    for sp in settings.spacing:
        add("spacing", f"no {sp.before} within {_dur(sp.gap)} after {sp.after}")
    for r in settings.routes:
        limit = f"{r.rate:g}/s burst {r.burst}" if r.rate else "unlimited"
        cap = f", daily cap {r.daily_cap:,} ({r.daily_cap_timezone})" if r.daily_cap else ""
        add(f"routes {r.provider}/{r.sender}/{r.carrier}", limit + cap)
    for name, p in sorted(settings.providers.items()):
        parts = [f"{k} {v}" for k, v in (("rate", p.rate), ("burst", p.burst), ("max_concurrency", p.max_concurrency),
                                         ("timeout", p.timeout), ("max_batch", p.max_batch)) if v is not None]
        if p.options:
            parts.append(f"options: {', '.join(sorted(p.options))}")
        add(f"providers.{name}", "; ".join(parts) or "defaults")
    rt = settings.retry
    add("retry", f"{rt.max_attempts} attempts, {_dur(rt.base_delay)} to {_dur(rt.max_delay)}, jitter {rt.jitter:g}")
    add("journal", settings.journal.path or "in memory (no journal)")
    if settings.plugins.allow or settings.plugins.block:
        add("plugins", f"allow {', '.join(settings.plugins.allow) or 'all'}; block {', '.join(settings.plugins.block) or 'none'}")
    return table


def _dur(seconds: Any) -> str:
    """Seconds as the shortest exact duration word ("16h", "30d", "90s")."""
    s = float(seconds)
    # Days only from two days up: a "24h" window reads better than "1d".
    for unit, size, least in (("d", 86400.0, 172800.0), ("h", 3600.0, 3600.0), ("m", 60.0, 60.0)):
        if s >= least and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{s:g}s"


if __name__ == "__main__":  # pragma: no cover - `python -m sendcore.cli`
    main()
