"""The ``querycache`` command: each subcommand parses its options and calls the library."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from collections.abc import Sized
from typing import Any

import click

from querycache.analysis import Analyzer
from querycache.cache import QueryCache
from querycache.config import CaptureConfig, Config
from querycache.errors import QueryCacheError

_DIALECTS = ("postgres", "mysql", "sqlite")
_PARAMSTYLES = ("format", "pyformat", "qmark", "named")


def _load_config(path: str | None) -> Config:
    path = path or os.environ.get("QUERYCACHE_CONFIG")
    return Config.from_yaml(path) if path else Config()


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@click.group()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="YAML configuration (default: $QUERYCACHE_CONFIG, else the embedded defaults).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """A multi-tier query cache in front of any PEP 249 connection."""
    try:
        config = _load_config(config_path)
    except QueryCacheError as exc:
        raise click.ClickException(str(exc)) from exc
    # The commands never start an in-process capture listener (it would bump everything on
    # connect); `capture` reads these settings itself.
    ctx.meta["capture"] = config.invalidation.capture
    ctx.obj = dataclasses.replace(config, invalidation=dataclasses.replace(config.invalidation,
                                                                           capture=CaptureConfig()))


@main.command()
@click.argument("sql")
@click.option("--dialect", type=click.Choice(_DIALECTS), default="postgres", show_default=True)
@click.option("--paramstyle", type=click.Choice(_PARAMSTYLES), default=None,
              help="Driver placeholder style (default: qmark for sqlite, format otherwise).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def explain(config: Config, sql: str, dialect: str, paramstyle: str | None, as_json: bool) -> None:
    """How the cache sees SQL: kind, tables, cacheability and why, hints, fingerprint."""
    style = paramstyle or ("qmark" if dialect == "sqlite" else "format")
    try:
        analysis = Analyzer(dialect, style, strict_hints=config.hints.strict)(sql)
    except QueryCacheError as exc:
        raise click.ClickException(str(exc)) from exc
    data = analysis.to_dict()
    if as_json:
        _echo_json(data)
        return
    for key in ("kind", "tables_read", "tables_written", "cacheable", "reason", "fingerprint", "normalized"):
        value = data[key]
        click.echo(f"{key:>15}: {', '.join(value) if isinstance(value, list) else value}")
    hints = {k: v for k, v in analysis.hints.to_dict().items() if v not in (None, False, [])}
    click.echo(f"{'hints':>15}: {hints or '-'}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def stats(config: Config, as_json: bool) -> None:
    """Counters of the shared store this configuration points at."""
    with QueryCache(config) as cache:
        backend = cache.backend
        data: dict[str, Any] = {
            "backend": backend.name,
            "namespace": cache.namespace,
            "epoch": backend.current_stamp()[0],
            "seq": backend.current_stamp()[1],
            "entries": len(backend) if isinstance(backend, Sized) else None,
            "bytes": getattr(backend, "size_bytes", None),
        }
        if backend.name == "memory":
            data["note"] = ("the memory store lives inside each application process; read its counters "
                            "there with cache.stats().to_dict(), or configure l2.backend: redis to share them")
        data["counters"] = cache.stats().to_dict()
    if as_json:
        _echo_json(data)
        return
    for key, value in data.items():
        if key != "counters":
            click.echo(f"{key:>10}: {value}")


@main.command()
@click.option("--tier", type=click.Choice(("l1", "l2", "l3")), default=None,
              help="Only this tier (default: all).")
@click.pass_obj
def flush(config: Config, tier: str | None) -> None:
    """Drop cached entries (table versions stay, so nothing old can come back)."""
    with QueryCache(config) as cache:
        cache.flush(tier)
        click.echo(f"flushed {tier or 'all tiers'} of {cache.backend.name} store namespace {cache.namespace!r}")


def _compiled_sqlglot() -> bool:
    spec = importlib.util.find_spec("sqlglot.parser")
    return bool(spec and spec.origin and spec.origin.endswith((".so", ".pyd")))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def doctor(config: Config, as_json: bool) -> None:
    """Check the installation and the configured store; exit 1 on any failure."""
    checks: list[tuple[str, str, str]] = []
    checks.append(("config", "ok", f"l2.backend={config.l2.backend}, l1.enabled={config.l1.enabled}"))
    checks.append(("sqlglot", "ok" if _compiled_sqlglot() else "warn",
                   "compiled (sqlglotc)" if _compiled_sqlglot() else "pure Python: pip install sqlglotc"))
    for module, extra in (("redis", "redis"), ("psycopg", "postgres"), ("psycopg2", "postgres"),
                          ("pymysql", "mysql"), ("faiss", "semantic"), ("sentence_transformers", "semantic")):
        found = importlib.util.find_spec(module) is not None
        checks.append((module, "ok" if found else "info",
                       "installed" if found else f"not installed (extra: querycache[{extra}])"))
    try:
        with QueryCache(config) as cache:
            epoch, seq = cache.backend.current_stamp()
            checks.append(("store", "ok", f"{cache.backend.name} reachable, epoch {epoch[:8]}, seq {seq}"))
            problems = getattr(cache.backend, "health_problems", None)
            for problem in problems() if callable(problems) else []:
                checks.append(("store", "fail", problem))
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure instead of raising
        checks.append(("store", "fail", f"{type(exc).__name__}: {exc}"))
    capture_dsn = _capture_settings().dsn
    if capture_dsn:
        checks.append(_capture_check(capture_dsn))
    failed = any(status == "fail" for _, status, _ in checks)
    if as_json:
        _echo_json({"ok": not failed, "checks": [{"check": c, "status": s, "detail": d} for c, s, d in checks]})
    else:
        for check, status, detail in checks:
            click.echo(f"[{status:>4}] {check:<22} {detail}")
    if failed:
        sys.exit(1)


def _capture_check(dsn: str) -> tuple[str, str, str]:
    from querycache import capture as capture_module

    try:
        import psycopg

        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            result = capture_module.status(conn)
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure instead of raising
        return ("capture", "fail", f"{type(exc).__name__}: {exc}")
    if not result.captured:
        return ("capture", "fail", "invalidation.capture.dsn is set but no table has the trigger: "
                                   "run `querycache capture install`")
    if result.missing:
        return ("capture", "warn", f"{len(result.missing)} tables without the trigger: {', '.join(result.missing)}")
    return ("capture", "ok", f"{len(result.captured)} tables captured"
                             + ("" if result.ddl_trigger else "; tables created later are not"))


@main.command()
@click.option("--statements", "-n", default=10000, show_default=True, help="Statements per run.")
@click.option("--write-ratio", default=0.002, show_default=True, help="Share of statements that write.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def demo(config: Config, statements: int, write_ratio: float, as_json: bool) -> None:
    """Run a read-mostly sqlite workload uncached and cached; print hit ratios and the speed-up."""
    from querycache.demo import run_demo

    if config.l2.backend != "memory":
        config = Config()  # the demo is about the embedded default
    with click.progressbar(length=2 * statements, label="uncached, then cached", file=sys.stderr) as bar:
        result = run_demo(statements, write_ratio, config, progress=bar.update)
    counters = result.stats
    hits = counters["hits"]
    total = result.statements
    summary = {
        "statements": total,
        "write_ratio": write_ratio,
        "uncached_seconds": round(result.uncached_s, 4),
        "cached_seconds": round(result.cached_s, 4),
        "speedup": round(result.speedup, 2),
        "hit_ratio": {"l1": round(hits["l1"] / total, 4), "l2": round(hits["l2"] / total, 4),
                      "any": round((hits["l1"] + hits["l2"] + hits["l3"]) / total, 4)},
        "misses": counters["misses"],
        "bypasses": counters["bypasses"],
        "stale_reads": result.stale_reads,
    }
    if as_json:
        _echo_json(summary)
    else:
        click.echo(f"statements        {total} per run ({write_ratio:.1%} writes)")
        click.echo(f"uncached          {result.uncached_s:.3f} s")
        click.echo(f"cached            {result.cached_s:.3f} s")
        click.echo(f"speed-up          {result.speedup:.2f}x")
        click.echo(f"hit ratio         L1 {summary['hit_ratio']['l1']:.1%}, L2 {summary['hit_ratio']['l2']:.1%}, "
                   f"all tiers {summary['hit_ratio']['any']:.1%}")
        click.echo(f"misses            {counters['misses']}; bypasses {counters['bypasses']}")
        click.echo(f"stale reads       {result.stale_reads} (every cached answer compared with the uncached one)")
    if result.stale_reads:
        sys.exit(2)


@main.command()
@click.option("--rounds", default=20000, show_default=True, help="Calls per measured path.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def bench(config: Config, rounds: int, as_json: bool) -> None:
    """Quick side-by-side timing on sqlite: raw point query vs L1 hit vs a cache miss."""
    from querycache.quickbench import run_quick_bench

    results = run_quick_bench(rounds)
    if as_json:
        _echo_json(results)
        return
    for name, row in results.items():
        click.echo(f"{name:<28} {row['median_us']:8.2f} µs   {row['ratio_to_raw']:.2f}x raw")
    click.echo("Full suite with pytest-benchmark: python bench/report.py")


@main.group()
def capture() -> None:
    """PostgreSQL change capture: writes made by psql or other apps invalidate too."""


def _capture_settings() -> CaptureConfig:
    settings: CaptureConfig = click.get_current_context().meta["capture"]
    return settings


def _capture_dsn(config: Config, dsn: str | None) -> str:
    dsn = dsn or _capture_settings().dsn
    if not dsn:
        raise click.UsageError("no database: pass --dsn or set invalidation.capture.dsn in the config")
    return dsn


def _pg_connect(dsn: str) -> Any:
    try:
        import psycopg
    except ModuleNotFoundError as exc:
        raise click.ClickException("capture needs psycopg 3: pip install 'querycache[postgres]'") from exc
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise click.ClickException(f"cannot connect to {dsn!r}: {exc}") from exc


def _print_capture(result: Any, as_json: bool) -> None:
    if as_json:
        _echo_json(result.to_dict())
        return
    click.echo(f"captured tables   {len(result.captured)}")
    missing = f": {', '.join(result.missing)}" if result.missing else ""
    click.echo(f"missing tables    {len(result.missing)}{missing}")
    click.echo(f"new tables        {'captured (event trigger installed)' if result.ddl_trigger else 'not captured'}")


@capture.command("install")
@click.option("--dsn", help="PostgreSQL connection string (default: invalidation.capture.dsn).")
@click.option("--no-ddl", is_flag=True, help="Do not install the event trigger for tables created later.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def capture_install(config: Config, dsn: str | None, no_ddl: bool, as_json: bool) -> None:
    """Install statement-level notify triggers on every table (idempotent)."""
    from querycache import capture as capture_module

    with _pg_connect(_capture_dsn(config, dsn)) as conn:
        _print_capture(capture_module.install(conn, ddl=not no_ddl), as_json)


@capture.command("uninstall")
@click.option("--dsn", help="PostgreSQL connection string (default: invalidation.capture.dsn).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def capture_uninstall(config: Config, dsn: str | None, as_json: bool) -> None:
    """Remove the triggers, the event trigger and the querycache schema."""
    from querycache import capture as capture_module

    with _pg_connect(_capture_dsn(config, dsn)) as conn:
        _print_capture(capture_module.uninstall(conn), as_json)


@capture.command("status")
@click.option("--dsn", help="PostgreSQL connection string (default: invalidation.capture.dsn).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def capture_status(config: Config, dsn: str | None, as_json: bool) -> None:
    """Which tables notify their writes; exit 1 when some do not."""
    from querycache import capture as capture_module

    with _pg_connect(_capture_dsn(config, dsn)) as conn:
        result = capture_module.status(conn)
    _print_capture(result, as_json)
    if result.missing:
        sys.exit(1)


@capture.command("listen")
@click.option("--dsn", help="PostgreSQL connection string (default: invalidation.capture.dsn).")
@click.option("--database-id", default=None, help="The database_id the applications pass to wrap(), if any.")
@click.pass_obj
def capture_listen(config: Config, dsn: str | None, database_id: str | None) -> None:
    """Run the listener in the foreground: one daemon bumps for every process sharing the store."""
    from querycache.capture import CaptureListener

    if config.l2.backend == "memory":
        raise click.UsageError("capture listen needs a shared store (l2.backend: redis); with the memory "
                               "store set invalidation.capture.dsn in the application's configuration")
    dsn = _capture_dsn(config, dsn)
    with QueryCache(config) as cache:
        click.echo(f"listening on {dsn!r}, bumping through {cache.backend.name} (Ctrl-C stops)", err=True)
        try:
            CaptureListener(cache, dsn, database_id or _capture_settings().database_id).run_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
