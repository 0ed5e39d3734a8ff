"""The ``sendcore`` command: run the demo workload, check a settings file, print the version."""

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
    """Load FILE as sendcore settings; print "ok" and a summary, or the error naming the key (exit 2)."""
    from .errors import ConfigError
    from .settings import Settings

    try:
        settings = Settings.from_toml(file)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    click.echo("ok")
    _console().print(_summary(settings))


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
