"""Change capture on PostgreSQL: writes made outside wrapped connections invalidate too.

``install`` puts one statement-level trigger, ``querycache_capture``, on every table
(partitions included) that sends ``pg_notify('querycache_capture', <table>)``; the
notification is delivered when the writing transaction commits, never for a rollback.
With superuser rights it also installs an event trigger that attaches the capture
trigger to tables created later and announces any other DDL as ``*`` (everything).

A ``CaptureListener`` (a thread: ``invalidation.capture.dsn`` in the config, or the
``querycache capture listen`` daemon) LISTENs and bumps the versions of the tables
named, through the cache's store, so every process sees it. On every (re)connect it
first bumps the whole database: notifications sent while nobody listened are lost.
A read that starts before the listener applied a notification may still be served
the old answer: external writes are fresh within the listener's delivery time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from querycache.analysis import ALL_TABLES, CATALOG_CHANGES
from querycache.errors import ConfigError

if TYPE_CHECKING:
    from querycache.cache import QueryCache

log = logging.getLogger("querycache")

CHANNEL = "querycache_capture"
TRIGGER = "querycache_capture"
EVENT_TRIGGER = "querycache_capture_ddl"
SCHEMA = "querycache"

_TABLES_SQL = """
SELECT n.nspname, c.relname,
       EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = %s)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s) AND n.nspname NOT LIKE 'pg\\_toast%%'
ORDER BY 1, 2
"""

_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.capture_notify() RETURNS trigger LANGUAGE plpgsql AS $qc$
BEGIN
  PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
  RETURN NULL;
END
$qc$
"""

_DDL_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.capture_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $qc$
DECLARE
  r record;
  announce boolean := false;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    CONTINUE WHEN r.schema_name LIKE 'pg\\_temp%' OR r.schema_name = '{SCHEMA}';
    IF r.object_type = 'table' AND r.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO') THEN
      EXECUTE format('CREATE OR REPLACE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE '
                     'ON %s FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.capture_notify()', r.object_identity);
    END IF;
    announce := true;
  END LOOP;
  IF announce THEN
    PERFORM pg_notify('{CHANNEL}', '{ALL_TABLES}');
  END IF;
END
$qc$
"""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _trigger_sql(schema: str, table: str) -> str:
    return (f"CREATE OR REPLACE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {_quote(schema)}.{_quote(table)} FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.capture_notify()")


@dataclass
class CaptureStatus:
    """Which tables notify their writes, and whether new tables will."""

    captured: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ddl_trigger: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"captured": self.captured, "missing": self.missing, "ddl_trigger": self.ddl_trigger}


def _rows(conn: Any, sql: str, params: Any = None) -> list[Any]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()


def _is_postgres(conn: Any) -> None:
    module = type(conn).__module__.split(".")[0]
    if module not in ("psycopg", "psycopg2"):
        raise ConfigError(f"change capture needs a PostgreSQL connection (psycopg or psycopg2), got {module}")


def status(conn: Any) -> CaptureStatus:
    """What ``install`` put in place on the database ``conn`` is connected to."""
    _is_postgres(conn)
    result = CaptureStatus()
    for schema, table, has in _rows(conn, _TABLES_SQL, (TRIGGER, SCHEMA)):
        (result.captured if has else result.missing).append(f"{schema}.{table}")
    result.ddl_trigger = bool(_rows(conn, "SELECT 1 FROM pg_event_trigger WHERE evtname = %s", (EVENT_TRIGGER,)))
    return result


@contextlib.contextmanager
def _transaction(conn: Any) -> Iterator[None]:
    """Run the block in one transaction, whatever the connection's autocommit setting was."""
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.autocommit = autocommit


def install(conn: Any, ddl: bool = True) -> CaptureStatus:
    """Install the notify function and a capture trigger on every table; one transaction.

    ``ddl``: also install the event trigger for tables created later (needs superuser; skipped,
    and reported by ``status``, without it).
    """
    _is_postgres(conn)
    with _transaction(conn):
        _rows(conn, f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        _rows(conn, _FUNCTION_SQL)
        for schema, table, _has in _rows(conn, _TABLES_SQL, (TRIGGER, SCHEMA)):
            _rows(conn, _trigger_sql(schema, table))
        conn.commit()
        if ddl:
            superuser = _rows(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if superuser and superuser[0][0]:
                _rows(conn, _DDL_FUNCTION_SQL)
                _rows(conn, f"DROP EVENT TRIGGER IF EXISTS {EVENT_TRIGGER}")
                _rows(conn, f"CREATE EVENT TRIGGER {EVENT_TRIGGER} ON ddl_command_end "
                            f"EXECUTE FUNCTION {SCHEMA}.capture_ddl()")
                conn.commit()
            else:
                conn.rollback()
                log.warning("querycache: not a superuser: tables created later are not captured until "
                            "`querycache capture install` runs again")
    return status(conn)


def uninstall(conn: Any) -> CaptureStatus:
    """Remove every capture trigger, the event trigger, the functions and the schema."""
    _is_postgres(conn)
    with _transaction(conn):
        _rows(conn, f"DROP EVENT TRIGGER IF EXISTS {EVENT_TRIGGER}")
        for schema, table, has in _rows(conn, _TABLES_SQL, (TRIGGER, SCHEMA)):
            if has:
                _rows(conn, f"DROP TRIGGER IF EXISTS {TRIGGER} ON {_quote(schema)}.{_quote(table)}")
        _rows(conn, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.commit()
    return status(conn)


class CaptureListener:
    """A thread that LISTENs on one PostgreSQL database and bumps what it hears (psycopg 3)."""

    def __init__(self, cache: QueryCache, dsn: str, database_id: str | None = None,
                 reconnect_s: float = 1.0) -> None:
        try:
            import psycopg  # noqa: F401
        except ModuleNotFoundError as exc:
            raise ConfigError("invalidation.capture.dsn needs psycopg 3: pip install 'querycache[postgres]'") from exc
        self.cache = cache
        self.dsn = dsn
        self.database_id = database_id
        self.reconnect_s = reconnect_s
        self.applied = 0
        """Notifications applied so far (each a bump through the store)."""
        self.connects = 0
        self._stop = threading.Event()
        self._applied_cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> CaptureListener:
        self._thread = threading.Thread(target=self._loop, name="querycache-capture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=3)

    def wait_applied(self, count: int, timeout_s: float) -> bool:
        """Block until ``applied >= count`` or the timeout; True when reached."""
        with self._applied_cond:
            return self._applied_cond.wait_for(lambda: self.applied >= count, timeout_s)

    def run_forever(self) -> None:
        """The loop in the calling thread (the ``capture listen`` daemon)."""
        self._loop()

    def _loop(self) -> None:
        import psycopg

        from querycache.drivers.registry import detect

        lost = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    database_id = self.database_id or detect(conn).server_state(conn, ()).database_id
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connects += 1
                    # Whatever was committed while nobody listened was never heard: bump everything.
                    self._bump(database_id, {ALL_TABLES})
                    log.log(logging.WARNING if lost else logging.INFO,
                            "querycache: capture listening on %s", database_id)
                    lost = False
                    while not self._stop.is_set():
                        names = {n.payload for n in conn.notifies(timeout=0.5, stop_after=1)}
                        if names:
                            # Drain what else has arrived, so one bump covers a burst.
                            names |= {n.payload for n in conn.notifies(timeout=0)}
                            self._bump(database_id, names)
            except psycopg.Error as exc:
                if not lost:  # once per outage, not per reconnect attempt
                    log.warning("querycache: capture listener lost its connection (%s); reconnecting", exc)
                    lost = True
                self._stop.wait(self.reconnect_s)

    def _bump(self, database_id: str, names: set[str]) -> None:
        tables = sorted(ALL_TABLES if name == ALL_TABLES else name.lower() for name in names)
        if ALL_TABLES in tables:
            # DDL, or a (re)connect: views, policies and dependencies may have changed too.
            tables = [ALL_TABLES, CATALOG_CHANGES]
            self.cache.context.invalidate_catalog(database_id)
        self.cache.invalidate_tables(*tables, database_id=database_id)
        with self._applied_cond:
            self.applied += 1
            self._applied_cond.notify_all()
