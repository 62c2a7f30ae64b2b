"""PostgreSQL change capture: writes made by ``psql`` (not through a wrapped connection) invalidate.

Each test runs in a database of its own (created and dropped here), because ``capture install``
puts triggers on every table of a database and an event trigger on the database itself.
External writes are made by the real ``psql`` client in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any, Iterator

import pytest

import querycache
from querycache.invalidation import capture
from tests.conftest import PG_DSN, require

WAIT_S = 10.0


@pytest.fixture
def capdb() -> Iterator[str]:
    """A fresh database; yields its DSN."""
    try:
        import psycopg

        admin = psycopg.connect(PG_DSN, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - any failure means no PostgreSQL
        require("PostgreSQL", exc)
    name = f"qc_capture_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    dsn = f"host=127.0.0.1 port=5432 dbname={name} user=postgres"
    try:
        yield dsn
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _pg(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def psql(dsn: str, *statements: str) -> None:
    """Run statements with the real psql client, as another application would."""
    if shutil.which("psql") is None:
        require("psql", RuntimeError("the psql client is not installed"))
    args = ["psql", dsn, "-v", "ON_ERROR_STOP=1", "-q"]
    for statement in statements:
        args += ["-c", statement]
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def _setup(dsn: str) -> None:
    psql(dsn,
         "CREATE TABLE parent (id int PRIMARY KEY, v int)",
         "CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE, v int)",
         "CREATE TABLE other (id int PRIMARY KEY, v int)",
         "CREATE TABLE measures (day int, v int) PARTITION BY RANGE (day)",
         "CREATE TABLE measures_1 PARTITION OF measures FOR VALUES FROM (0) TO (100)",
         "CREATE VIEW parent_view AS SELECT id, v * 10 AS v10 FROM parent",
         "INSERT INTO parent VALUES (1, 1), (2, 2)",
         "INSERT INTO child VALUES (1, 1, 100), (2, 2, 200)",
         "INSERT INTO other VALUES (1, 1)",
         "INSERT INTO measures VALUES (5, 50)")


def _read(conn: Any, sql: str) -> tuple[list[Any], str]:
    cur = conn.cursor()
    cur.execute(sql)
    return cur.fetchall(), cur.cache_status


def _warm(conn: Any, sql: str) -> list[Any]:
    rows, _ = _read(conn, sql)
    again, status = _read(conn, sql)
    assert status == "hit:L1" and again == rows
    return rows


@pytest.fixture
def captured(capdb: str) -> Iterator[tuple[str, Any, Any]]:
    """Tables set up, capture installed, a cache with an in-process listener and a wrapped connection."""
    _setup(capdb)
    with _pg(capdb) as conn:
        capture.install(conn)
    cache = querycache.QueryCache.from_dict({"invalidation": {"capture": {"dsn": capdb}}})
    assert cache.capture is not None and cache.capture.wait_applied(1, WAIT_S)  # the bump on connect
    conn = cache.wrap(_pg(capdb))
    try:
        yield capdb, cache, conn
    finally:
        conn.close()
        cache.close()


def test_install_status_uninstall(capdb: str) -> None:
    _setup(capdb)
    with _pg(capdb) as conn:
        before = capture.status(conn)
        assert before.captured == [] and not before.ddl_trigger
        assert set(before.missing) == {"public.parent", "public.child", "public.other", "public.measures",
                                       "public.measures_1"}
        installed = capture.install(conn)
        assert installed.missing == [] and installed.ddl_trigger
        assert set(installed.captured) == set(before.missing)
        assert capture.install(conn).captured == installed.captured  # idempotent
        # A table created later gets the trigger from the event trigger; a temporary one does not.
        conn.execute("CREATE TABLE later (id int)")
        conn.execute("CREATE TEMP TABLE scratch (id int)")
        assert "public.later" in capture.status(conn).captured
        removed = capture.uninstall(conn)
        assert removed.captured == [] and not removed.ddl_trigger
        assert "public.later" in removed.missing
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'querycache'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'querycache_capture'").fetchone() == (0,)


def test_psql_write_invalidates_and_stays_stale_without_listener(captured: tuple[str, Any, Any]) -> None:
    dsn, cache, conn = captured
    sql = "SELECT v FROM parent WHERE id = 1"
    assert _warm(conn, sql) == [(1,)]
    applied = cache.capture.applied
    psql(dsn, "UPDATE parent SET v = 11 WHERE id = 1")
    assert cache.capture.wait_applied(applied + 1, WAIT_S)
    assert _read(conn, sql) == ([(11,)], "miss")
    assert _read(conn, sql) == ([(11,)], "hit:L1")
    # The control: with nobody listening, the same kind of write leaves the old answer (TTL only).
    cache.capture.stop()
    psql(dsn, "UPDATE parent SET v = 12 WHERE id = 1")
    time.sleep(0.5)
    assert _read(conn, sql) == ([(11,)], "hit:L1")


def test_cascade_view_partition_and_truncate(captured: tuple[str, Any, Any]) -> None:
    dsn, cache, conn = captured
    child = "SELECT id, v FROM child ORDER BY id"
    view = "SELECT id, v10 FROM parent_view ORDER BY id"
    parted = "SELECT day, v FROM measures ORDER BY day"
    other = "SELECT v FROM other"
    for sql in (child, view, parted, other):
        _warm(conn, sql)
    applied = cache.capture.applied
    # FK cascade: the DELETE on parent deletes child rows; the view reads parent.
    psql(dsn, "DELETE FROM parent WHERE id = 2")
    assert cache.capture.wait_applied(applied + 1, WAIT_S)
    assert _read(conn, child) == ([(1, 100)], "miss")
    assert _read(conn, view) == ([(1, 10)], "miss")
    # A write into a partition directly, then a TRUNCATE of the parent.
    applied = cache.capture.applied
    psql(dsn, "UPDATE measures_1 SET v = 51")
    assert cache.capture.wait_applied(applied + 1, WAIT_S)
    assert _read(conn, parted) == ([(5, 51)], "miss")
    _read(conn, parted)
    applied = cache.capture.applied
    psql(dsn, "TRUNCATE measures")
    assert cache.capture.wait_applied(applied + 1, WAIT_S)
    assert _read(conn, parted) == ([], "miss")
    # None of that touched `other`.
    assert _read(conn, other) == ([(1,)], "hit:L1")


def test_rolled_back_write_sends_nothing_and_ddl_invalidates_everything(captured: tuple[str, Any, Any]) -> None:
    dsn, cache, conn = captured
    sql = "SELECT v FROM other"
    _warm(conn, sql)
    applied = cache.capture.applied
    psql(dsn, "BEGIN", "UPDATE other SET v = 99", "ROLLBACK", "UPDATE parent SET v = 5 WHERE id = 1")
    assert cache.capture.wait_applied(applied + 1, WAIT_S)
    time.sleep(0.2)
    assert cache.capture.applied == applied + 1  # only the committed UPDATE was heard
    assert _read(conn, sql) == ([(1,)], "hit:L1")
    # Any DDL is announced as "everything changed".
    applied = cache.capture.applied
    psql(dsn, "ALTER TABLE child ADD COLUMN note text")
    assert cache.capture.wait_applied(applied + 1, WAIT_S)
    assert _read(conn, sql) == ([(1,)], "miss")


def test_capture_trigger_does_not_widen_wrapped_writes(captured: tuple[str, Any, Any]) -> None:
    """A table with a user trigger invalidates the whole database on write; ours must not count."""
    _dsn, _cache, conn = captured
    _warm(conn, "SELECT v FROM other")
    cur = conn.cursor()
    cur.execute("UPDATE parent SET v = 3 WHERE id = 1")
    assert _read(conn, "SELECT v FROM other") == ([(1,)], "hit:L1")
    assert _read(conn, "SELECT v FROM parent WHERE id = 1") == ([(3,)], "miss")


def test_listener_reconnects_and_bumps_everything(captured: tuple[str, Any, Any]) -> None:
    dsn, cache, conn = captured
    sql = "SELECT v FROM other"
    _warm(conn, sql)
    listener = cache.capture
    assert listener.connects == 1
    with _pg(dsn) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE query LIKE 'LISTEN querycache_capture%' AND pid <> pg_backend_pid()")
    deadline = time.monotonic() + WAIT_S
    while listener.connects < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.connects == 2
    # Writes while it was away were never heard: reconnecting made everything stale.
    assert listener.wait_applied(2, WAIT_S)
    assert _read(conn, sql)[1] == "miss"
    applied = listener.applied
    psql(dsn, "UPDATE other SET v = 2")
    assert listener.wait_applied(applied + 1, WAIT_S)
    assert _read(conn, sql) == ([(2,)], "miss")


def test_capture_listen_daemon_through_redis(captured: tuple[str, Any, Any], tmp_path: Any) -> None:
    """`querycache capture listen` in its own process bumps through Redis for every other process."""
    from tests.backends.test_redis import REDIS_URL, _redis_up

    _redis_up(REDIS_URL)
    dsn = captured[0]
    namespace = "cap" + uuid.uuid4().hex[:8]
    config = tmp_path / "qc.yaml"
    config.write_text(f"l2: {{backend: redis, url: '{REDIS_URL}', namespace: {namespace}}}\n"
                      f"invalidation: {{capture: {{dsn: '{dsn}'}}}}\n")
    cache = querycache.QueryCache.from_yaml(config)
    assert cache.capture is not None
    cache.capture.stop()  # this process only reads; the daemon below listens
    conn = cache.wrap(_pg(dsn))
    daemon = subprocess.Popen([sys.executable, "-m", "querycache", "--config", str(config), "capture", "listen"],
                              stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert daemon.stderr is not None
        assert b"listening" in daemon.stderr.readline()
        sql = "SELECT v FROM other"
        # Until the daemon's bump on connect has landed, a read may miss again: read until L1 answers.
        deadline = time.monotonic() + WAIT_S
        while _read(conn, sql) != ([(1,)], "hit:L1"):
            assert time.monotonic() < deadline, "never an L1 hit"
            time.sleep(0.1)
        psql(dsn, "UPDATE other SET v = 7")
        deadline = time.monotonic() + WAIT_S
        rows: list[Any] = [(1,)]
        while rows == [(1,)] and time.monotonic() < deadline:
            rows, _status = _read(conn, sql)
            time.sleep(0.01)
        assert rows == [(7,)]
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        conn.close()
        cache.close()


def test_capture_needs_postgres(tmp_path: Any) -> None:
    import sqlite3

    with pytest.raises(querycache.ConfigError, match="PostgreSQL connection"):
        capture.install(sqlite3.connect(":memory:"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "querycache", *args], capture_output=True, text=True, timeout=120)


def test_cli_capture_install_status_doctor_uninstall(capdb: str, tmp_path: Any) -> None:
    import json

    _setup(capdb)
    status = _cli("capture", "status", "--dsn", capdb, "--json")
    assert status.returncode == 1 and len(json.loads(status.stdout)["missing"]) == 5
    installed = _cli("capture", "install", "--dsn", capdb, "--json")
    assert installed.returncode == 0, installed.stderr
    assert json.loads(installed.stdout)["missing"] == []
    config = tmp_path / "qc.yaml"
    config.write_text(f"invalidation: {{capture: {{dsn: '{capdb}'}}}}\n")
    assert _cli("--config", str(config), "capture", "status").returncode == 0  # the DSN from the config
    doctor = _cli("--config", str(config), "doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout
    checks = {c["check"]: (c["status"], c["detail"]) for c in json.loads(doctor.stdout)["checks"]}
    assert checks["capture"] == ("ok", "5 tables captured")
    # A table added without the event trigger shows up as missing, and doctor warns.
    psql(capdb, "DROP EVENT TRIGGER querycache_capture_ddl", "CREATE TABLE late (id int)")
    doctor = json.loads(_cli("--config", str(config), "doctor", "--json").stdout)
    assert {c["check"]: c["status"] for c in doctor["checks"]}["capture"] == "warn"
    removed = _cli("capture", "uninstall", "--dsn", capdb, "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout)["captured"] == []
    doctor_run = _cli("--config", str(config), "doctor", "--json")
    assert doctor_run.returncode == 1  # capture configured, nothing installed
    # Without a DSN anywhere: a usage error that says what to pass.
    missing = _cli("capture", "status")
    assert missing.returncode == 2 and "--dsn" in missing.stderr
    # `capture listen` refuses the per-process memory store.
    listen = _cli("--config", str(config), "capture", "listen")
    assert listen.returncode == 2 and "l2.backend: redis" in listen.stderr


def test_listener_warns_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    from querycache.invalidation.capture import CaptureListener

    caplog.set_level("WARNING", logger="querycache")
    cache = querycache.QueryCache()
    listener = CaptureListener(cache, "host=127.0.0.1 port=1 dbname=none user=postgres connect_timeout=1",
                               reconnect_s=0.05).start()
    time.sleep(1.0)  # many reconnect attempts
    listener.stop()
    cache.close()
    lost = [r for r in caplog.records if "lost its connection" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in caplog.records]
