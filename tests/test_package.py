"""Packaging promises: a light import, typed public API, the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import querycache

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("redis", "torch", "faiss", "sentence_transformers", "psycopg", "psycopg2", "pymysql", "MySQLdb", "numpy",
         "sqlalchemy", "django")


def test_import_pulls_no_optional_dependency() -> None:
    code = ("import sys, querycache; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api() -> None:
    assert set(querycache.__all__) >= {"QueryCache", "Config", "ConfigError", "QueryCacheError", "BypassReason"}
    assert issubclass(querycache.ConfigError, querycache.QueryCacheError)
    assert issubclass(querycache.ConfigError, ValueError)
    assert (Path(querycache.__file__).parent / "py.typed").exists()
    assert querycache.BypassReason("tx_dirty") is querycache.BypassReason.TX_DIRTY
    for reason in ("write", "ddl", "unknown", "session", "tx_dirty", "tx_isolation", "hint_skip", "locking",
                   "volatile", "select_into", "temp_table", "multi_statement", "callproc", "replica",
                   "store_unavailable", "disabled"):
        assert querycache.BypassReason(reason).value == reason


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("QUERYCACHE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "querycache", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)


def test_cli_explain_json() -> None:
    result = _cli("explain", "--json", "--dialect", "mysql",
                  "/* cache ttl=30 */ SELECT o.id FROM shop.`Orders` o JOIN items i ON i.oid = o.id WHERE o.x = %s")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("kind", "tables_read", "tables_written", "cacheable", "reason", "hints", "fingerprint", "normalized"):
        assert key in data
    assert data["tables_read"] == ["items", "orders"]
    assert data["cacheable"] is True
    assert data["hints"]["ttl"] == 30
    assert "cache" not in data["normalized"]


def test_cli_explain_reason() -> None:
    data = json.loads(_cli("explain", "--json", "SELECT * FROM t FOR UPDATE").stdout)
    assert data["cacheable"] is False
    assert data["reason"] == "locking"


def test_cli_config_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("l1:\n  max_entires: 5\n")
    result = _cli("--config", str(bad), "stats")
    assert result.returncode != 0
    assert "l1.max_entires" in result.stderr and "max_entries" in result.stderr


def test_cli_doctor_and_stats_and_flush() -> None:
    doctor = _cli("doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    checks = {c["check"]: c["status"] for c in json.loads(doctor.stdout)["checks"]}
    assert checks["store"] == "ok"
    stats = json.loads(_cli("stats", "--json").stdout)
    assert stats["backend"] == "memory"
    assert "hits" in stats["counters"]
    assert _cli("flush", "--tier", "l2", "--yes").returncode == 0


def test_cli_demo_reports_no_stale_reads() -> None:
    result = _cli("demo", "--statements", "1500", "--write-ratio", "0.02", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["stale_reads"] == 0
    assert data["statements"] == 1500
    assert data["hit_ratio"]["any"] > 0
    assert data["bypasses"].get("write", 0) > 0


def test_cli_bench_runs() -> None:
    result = _cli("bench", "--rounds", "2000", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"raw sqlite point query", "L1 hit", "L1 hit, stats off", "miss (memory L2 fill)"}


def test_fork_child_drops_l1(tmp_path: Path) -> None:
    code = f"""
import os, sqlite3, warnings, querycache
db = {str(tmp_path / 'f.db')!r}
raw = sqlite3.connect(db, isolation_level=None)
raw.execute("CREATE TABLE t (a INTEGER)"); raw.execute("INSERT INTO t VALUES (1)")
cache = querycache.QueryCache()
conn = cache.wrap(sqlite3.connect(db, isolation_level=None))
cur = conn.cursor(); cur.execute("SELECT a FROM t"); cur.fetchall(); cur.execute("SELECT a FROM t")
assert cur.cache_status == "hit:L1"
pid = os.fork()
if pid == 0:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cur.execute("SELECT a FROM t")
        status = cur.cache_status
    ok = status != "hit:L1" and any("fork" in str(w.message) for w in caught)
    os._exit(0 if ok else 1)
_, code = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(code))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "0", out.stdout + out.stderr
