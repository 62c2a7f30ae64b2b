"""The `querycache` command and the metrics: through click's runner and as real subprocesses,
against real Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import querycache
from querycache.cli import main
from tests.backends.test_redis import REDIS_URL, _redis_up
from tests.conftest import PG_DSN, Database, make_items, require, run
from tests.test_analysis_corpus import CORPUS, DEFAULT_PARAMSTYLE

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "querycache", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def _redis_config(tmp_path: Path, namespace: str, url: str = REDIS_URL) -> Path:
    path = tmp_path / "qc.yaml"
    path.write_text(f"l2: {{backend: redis, url: '{url}', namespace: {namespace}, timeout_ms: 500}}\n"
                    "stats: {publish_interval_s: 0.3}\n")
    return path


# -- explain ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", CORPUS, ids=[e["id"] for e in CORPUS])
def test_explain_json_on_the_corpus(entry: dict[str, Any]) -> None:
    style = entry.get("paramstyle", DEFAULT_PARAMSTYLE[entry["dialect"]])
    result = CliRunner().invoke(main, ["explain", "--json", "--dialect", entry["dialect"], "--paramstyle", style,
                                       entry["sql"]])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in ("kind", "tables_read", "tables_written", "cacheable", "reason", "hints", "fingerprint",
                "normalized", "tier"):
        assert key in data, key
    assert set(data["tables_read"]) == set(entry["tables_read"])
    assert set(data["tables_written"]) - {"*"} == set(entry["tables_written"])
    if "cacheable" in entry:
        assert data["cacheable"] is entry["cacheable"]


def test_explain_with_a_database_says_which_tier_answers(pg: Database, tmp_path: Path) -> None:
    table = make_items(pg)
    sql = f"SELECT qty FROM {table} WHERE id = %s"
    first = json.loads(_cli("explain", "--json", "--dsn", PG_URL, "--params", "[1]", sql).stdout)
    assert first["tier"] == "database" and first["why"].startswith("miss")
    assert any(k.endswith("\x1f" + table) for k in first["version_keys"])
    assert first["keys"]["l2"].startswith("querycache:e:")
    # Fill the store the CLI reads (Redis), then ask again.
    _redis_up(REDIS_URL)
    namespace = "ex" + uuid.uuid4().hex[:8]
    config = _redis_config(tmp_path, namespace)
    cache = querycache.QueryCache.from_yaml(config)
    import psycopg

    conn = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))  # the CLI's kind of cursor: same key
    run(conn, sql, (1,))
    try:
        again = json.loads(_cli("--config", str(config), "explain", "--json", "--dsn", PG_URL, "--params", "[1]",
                                sql).stdout)
        assert again["tier"] == "l2", (again.get("why"), again.get("version_keys"), again.get("keys"))
        other = json.loads(_cli("--config", str(config), "explain", "--json", "--dsn", PG_URL, "--params", "[2]",
                                sql).stdout)
        assert other["tier"] == "database"
        write = json.loads(_cli("explain", "--json", "--dsn", PG_URL, f"UPDATE {table} SET qty = 1").stdout)
        assert write["tier"] == "database" and write["why"] == "bypass:write"
    finally:
        cache.close()


def test_explain_bad_params_is_one_clear_line() -> None:
    result = CliRunner().invoke(main, ["explain", "--params", "{not json", "SELECT 1"])
    assert result.exit_code == 2
    assert "--params" in result.output and "not JSON" in result.output
    assert "Traceback" not in result.output


# -- stats --------------------------------------------------------------------------------------------

STATS_KEYS = {"hits", "misses", "coalesced", "fills", "bypasses", "not_filled", "invalidations", "fail_open",
              "latency_seconds", "coalesce", "entries", "bytes", "evictions", "hint_warnings"}
ROW_KEYS = {"fingerprint", "normalized", "calls", "hits", "misses", "bypasses", "hit_ratio", "executions",
            "backend_seconds_total", "backend_seconds_mean", "time_saved_seconds", "last_status"}


def test_stats_json_sums_the_fleet_of_processes(pg: Database, tmp_path: Path) -> None:
    _redis_up(REDIS_URL)
    table = make_items(pg)
    namespace = "st" + uuid.uuid4().hex[:8]
    config = _redis_config(tmp_path, namespace)
    script = f"""
import psycopg, querycache, sys, time
cache = querycache.QueryCache.from_yaml({str(config)!r})
conn = cache.wrap(psycopg.connect({PG_DSN!r}, autocommit=True))
cur = conn.cursor()
for _ in range(10):
    cur.execute("SELECT qty FROM {table} WHERE id = %s", (1,)); cur.fetchall()
cache.publish_stats()
print("ready", flush=True)
sys.stdin.readline()
"""
    procs = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        result = CliRunner().invoke(main, ["--config", str(config), "stats", "--json", "--top", "5",
                                           "--sort", "calls"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["processes"] == 3 and data["backend"] == "redis"
        assert STATS_KEYS <= set(data["counters"])
        counters = data["counters"]
        answered = counters["hits"]["l1"] + counters["hits"]["l2"] + counters["misses"] + counters["coalesced"]
        assert counters["misses"] >= 1 and answered == 30, counters  # 3 processes x 10 reads
        rows = data["fingerprints"]
        assert rows and ROW_KEYS <= set(rows[0])
        assert rows[0]["calls"] == 30 and rows[0]["executions"] >= 1
        assert rows[0]["time_saved_seconds"] > 0
        text = _cli("--config", str(config), "stats", "--top", "3", env={"COLUMNS": "200"})
        assert text.returncode == 0 and "3 process(es) reporting" in text.stdout and table in text.stdout
    finally:
        for p in procs:
            p.communicate("\n", timeout=30)


def test_stats_with_the_memory_store_says_where_counters_live() -> None:
    result = CliRunner().invoke(main, ["stats", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["backend"] == "memory" and "note" in data and STATS_KEYS <= set(data["counters"])


# -- flush ------------------------------------------------------------------------------------------

def test_flush_asks_unless_yes_and_flushes_one_tenant(pg: Database, tmp_path: Path) -> None:
    _redis_up(REDIS_URL)
    table = make_items(pg)
    namespace = "fl" + uuid.uuid4().hex[:8]
    config = _redis_config(tmp_path, namespace)
    cache = querycache.QueryCache.from_yaml(config)
    conn = cache.wrap(pg.connect())
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    try:
        for tenant in ("acme", "globex"):
            with cache.scope(tenant=tenant):
                run(conn, sql)
        cache.flush("l1")
        refused = CliRunner().invoke(main, ["--config", str(config), "flush"], input="n\n")
        assert refused.exit_code == 1 and "Aborted" in refused.output
        flushed = CliRunner().invoke(main, ["--config", str(config), "flush", "--tenant", "acme"])
        assert flushed.exit_code == 0, flushed.output
        with cache.scope(tenant="acme"):
            assert run(conn, sql)[1] == "miss"
        with cache.scope(tenant="globex"):
            assert run(conn, sql)[1] == "hit:L2"  # the other tenant's entry stayed
        table_flush = CliRunner().invoke(main, ["--config", str(config), "flush", "--table", table, "--dsn", PG_URL])
        assert table_flush.exit_code == 0, table_flush.output
        with cache.scope(tenant="globex"):
            assert run(conn, sql)[1] == "miss"  # invalidated through the shared clock
        assert CliRunner().invoke(main, ["--config", str(config), "flush", "--yes"]).exit_code == 0
        missing = CliRunner().invoke(main, ["--config", str(config), "flush", "--table", table])
        assert missing.exit_code == 2 and "--dsn" in missing.output
    finally:
        cache.close()


# -- doctor ---------------------------------------------------------------------------------------

def test_doctor_checks_redis_and_databases(tmp_path: Path) -> None:
    _redis_up(REDIS_URL)
    config = _redis_config(tmp_path, "doc")
    result = _cli("--config", str(config), "doctor", "--json", "--dsn", PG_URL)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    for name in ("store", "redis version", "redis latency", "redis maxmemory-policy", "redis pub/sub", "database"):
        assert checks[name]["status"] == "ok", checks[name]


def test_doctor_reports_the_framework_integrations() -> None:
    result = _cli("doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["querycache.sqlalchemy"]["status"] == "ok", checks["querycache.sqlalchemy"]
    assert checks["querycache.sqlalchemy"]["detail"].startswith("importable (SQLAlchemy 2.")
    django = checks["querycache.django"]
    assert django["status"] == "ok", django
    assert "querycache.django.{postgresql,sqlite3,mysql} importable" in django["detail"], django


def test_doctor_with_redis_down_fails_and_says_how_to_fix(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = _redis_config(tmp_path, "down", url=f"redis://127.0.0.1:{port}/0")
    result = _cli("--config", str(config), "doctor")
    assert result.returncode == 1
    assert "fail" in result.stdout and "start Redis" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    db = _cli("doctor", "--json", "--dsn", "postgresql://nobody@127.0.0.1:1/none")
    assert db.returncode == 1
    assert {c["check"]: c["status"] for c in json.loads(db.stdout)["checks"]}["database"] == "fail"


@pytest.mark.parametrize("command", [["stats"], ["flush", "--yes"], ["doctor"], ["explain", "SELECT 1"],
                                     ["capture", "status", "--dsn", "x"]])
def test_bad_config_is_one_clear_message(command: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("l2:\n  backend: redis\n  urll: redis://x\n")
    result = _cli("--config", str(bad), *command)
    assert result.returncode != 0
    assert "l2.urll" in result.stderr and "accepted keys" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- Prometheus ---------------------------------------------------------------------------------------

def test_prometheus_endpoint_serves_the_counters(pg: Database, cache: querycache.QueryCache) -> None:
    table = make_items(pg)
    conn = cache.wrap(pg.connect())
    for _ in range(3):
        run(conn, f"SELECT qty FROM {table} WHERE id = 1")
    run(conn, f"UPDATE {table} SET qty = 2 WHERE id = 1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = cache.serve_metrics(port, addr="127.0.0.1")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        server.shutdown()
    assert 'querycache_hits_total{tier="l1"} 2.0' in body
    assert "querycache_misses_total 1.0" in body
    assert 'querycache_bypasses_total{reason="write"} 1.0' in body
    assert f'querycache_invalidations_total{{table="{table}"}} 1.0' in body
    assert 'querycache_latency_seconds_bucket{le="+Inf",path="l1"}' in body  # sampled: 1 hit in 64
    assert 'querycache_latency_seconds_bucket{le="+Inf",path="miss"} 1.0' in body
    assert 'querycache_entries{tier="l1"}' in body


def test_wsgi_mount_and_stats_off() -> None:
    from prometheus_client import make_wsgi_app

    cache = querycache.QueryCache.from_dict({"stats": {"enabled": False}})
    try:
        app = make_wsgi_app(cache.metrics_registry())
        out: dict[str, Any] = {}
        body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""},
                            lambda status, headers: out.setdefault("status", status)))
        assert out["status"].startswith("200") and b"querycache_misses_total 0.0" in body
        import sqlite3

        conn = cache.wrap(sqlite3.connect(":memory:"))
        conn.execute("CREATE TABLE t (a)")
        for _ in range(3):
            run(conn, "SELECT a FROM t")
        snap = cache.stats().to_dict()
        assert snap["hits"]["l1"] == 2 and snap["fingerprints"] == []  # counters stay, rows do not
        assert snap["latency_seconds"]["l1"]["count"] == 0
    finally:
        cache.close()


# -- bench (querycache/benchmark/hotpath.py) ----------------------------------------------------------
def test_bench_times_the_hot_paths_against_the_raw_query() -> None:
    result = _cli("bench", "--rounds", "400", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"raw sqlite point query", "L1 hit", "L1 hit, stats off", "miss (memory L2 fill)"}
    assert data["raw sqlite point query"]["ratio_to_raw"] == 1.0
    assert all(row["median_us"] > 0 for row in data.values())


# -- bench workload -----------------------------------------------------------------------------------

def _services_up() -> None:
    import psycopg

    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any failure means the service is absent
        require("PostgreSQL", exc)
    _redis_up(REDIS_URL)


def test_bench_workload_runs_the_workload_runner_and_cleans_up(tmp_path: Path) -> None:
    _services_up()
    result = subprocess.run(
        [sys.executable, "-m", "querycache", "bench", "workload", "--scale", "0.004", "--duration", "1",
         "--threads", "2", "--contenders", "uncached,qc-mem,qc-redis", "--pg-dsn", PG_DSN,
         "--redis-url", REDIS_URL, "--out", str(tmp_path)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "workload.json").read_text())
    assert [c["contender"] for c in data["contenders"]] == ["uncached", "qc-mem", "qc-redis"]
    for c in data["contenders"]:
        assert c["ops"] > 0 and c["errors"] == 0 and c["hung_threads"] == 0, c
        assert c["stale_reads"] == 0 and c["stale_reads_from_db"] == 0, c["stale_samples"]
        assert c["checked_reads"] > 0
    assert data["contenders"][2]["querycache"]["lookups"] > 0
    for c in data["contenders"]:
        timeline = c["timeline"]
        assert sum(timeline["ops"]) == c["ops"] and sum(timeline["reads"]) == c["reads"]
    table = (tmp_path / "workload.md").read_text()
    assert "| qc-redis |" in table and f"dropped schema {data['schema']}" in result.stdout
    assert (tmp_path / "workload.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "workload.png" in table
    import psycopg
    import redis

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (data["schema"],)).fetchone()
        assert row == (0,)
    prefix = data["schema"]  # the run's key prefix is its schema name
    with redis.Redis.from_url(REDIS_URL) as client:
        assert not list(client.scan_iter(match=f"{prefix}*", count=1000))


def test_bench_workload_options_are_the_runners() -> None:
    help_text = _cli("bench", "workload", "--help")
    assert help_text.returncode == 0
    assert "usage: querycache bench workload" in help_text.stdout and "--contenders" in help_text.stdout
    bad = _cli("bench", "workload", "--contenders", "uncached,nope")
    assert bad.returncode == 2 and "unknown contender" in bad.stderr and "Traceback" not in bad.stderr
