"""The databases the workload runs on: how to connect, open a transaction, name a dataset, create and
drop it, and read the statistics that exist on that database only.

A *dataset* is one generated shop: a schema on PostgreSQL, a database on MariaDB (both named
``wl_<hex>``, so the workload's statements qualify every table the same way), a file
``wl_<hex>.db`` on sqlite. Each engine is built from one string (``target``: a libpq DSN, a
``mysql://`` URL, a directory) so that worker processes can rebuild it from their ``Spec``.
Drivers are imported inside the methods that use them (psycopg and PyMySQL are optional extras).
"""

from __future__ import annotations

import datetime as dt
import platform
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

ENGINES = ("postgres", "mariadb", "sqlite")
STATEMENT_TIMEOUT_S = 60
SQLITE_BUSY_TIMEOUT_S = 30.0


class Engine:
    name = ""
    label = ""
    driver = ""  # the module that must be importable
    update_returns = True  # UPDATE ... RETURNING: the new version comes back with the write
    qualified = True  # statements name tables as <dataset>.<table>
    dataset_kind = "schema"

    def __init__(self, target: str) -> None:
        self.target = target

    # -- worker side -----------------------------------------------------------------------------

    def connect(self, dataset: str) -> Any:
        """A new autocommit driver connection that can read ``dataset``."""
        raise NotImplementedError

    def transaction(self, conn: Any) -> Any:
        """A context manager: a transaction on ``conn`` (wrapped or not), yielding a cursor; it commits
        when the block ends cleanly and rolls back otherwise."""
        return _explicit_transaction(conn, begin=lambda cur: conn.begin())

    def adapt(self, params: tuple[Any, ...]) -> tuple[Any, ...]:
        """The workload's parameters as this driver binds them."""
        return params

    def broken(self, conn: Any) -> bool:
        """Whether ``conn`` (raw) is unusable, so that the thread reconnects after an error."""
        return False

    # -- the runner's side: one administrative connection -------------------------------------------

    def execute(self, dataset: str, sql: str) -> list[tuple[Any, ...]]:
        """Run ``sql`` on the administrative connection; its rows (none for a statement without)."""
        raise NotImplementedError

    def one(self, dataset: str, sql: str) -> Any:
        rows = self.execute(dataset, sql)
        assert rows, sql
        return rows[0][0]

    def exists(self, dataset: str) -> bool:
        raise NotImplementedError

    def has_column(self, dataset: str, table: str, column: str) -> bool:
        return bool(self.one(dataset, f"SELECT count(*) FROM information_schema.columns WHERE table_schema = "
                                      f"'{dataset}' AND table_name = '{table}' AND column_name = '{column}'"))

    def prepare(self, dataset: str) -> None:
        """Create the empty dataset (the tables come from schema.steps)."""
        raise NotImplementedError

    def drop(self, dataset: str) -> None:
        raise NotImplementedError

    def where(self, dataset: str) -> str:
        """The dataset as a person would look for it."""
        return f"{self.dataset_kind} {dataset}"

    def counters(self, dataset: str) -> dict[str, int] | None:
        """The server's cumulative table access counters for ``dataset``; None where there are none to
        read (only PostgreSQL keeps them per table: ``pg_stat_user_tables``)."""
        return None

    def server_version(self) -> str:
        raise NotImplementedError

    def driver_version(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


@contextmanager
def _explicit_transaction(conn: Any, begin: Callable[[Any], Any]) -> Iterator[Any]:
    with closing(conn.cursor()) as cur:
        begin(cur)
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


class Postgres(Engine):
    name = "postgres"
    label = "PostgreSQL"
    driver = "psycopg"

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self._admin: Any = None

    def connect(self, dataset: str) -> Any:
        import psycopg

        return psycopg.connect(self.target, autocommit=True,
                               options=f"-c statement_timeout={STATEMENT_TIMEOUT_S * 1000}")

    @contextmanager
    def transaction(self, conn: Any) -> Iterator[Any]:
        with conn.transaction(), closing(conn.cursor()) as cur:
            yield cur

    def broken(self, conn: Any) -> bool:
        return bool(conn.closed)

    def _conn(self) -> Any:
        if self._admin is None:
            import psycopg

            self._admin = psycopg.connect(self.target, autocommit=True)
        return self._admin

    def execute(self, dataset: str, sql: str) -> list[tuple[Any, ...]]:
        cur = self._conn().execute(sql)
        return [tuple(r) for r in cur.fetchall()] if cur.description is not None else []

    def exists(self, dataset: str) -> bool:
        return bool(self.one(dataset, f"SELECT count(*) FROM pg_namespace WHERE nspname = '{dataset}'"))

    def prepare(self, dataset: str) -> None:
        self.execute(dataset, f"CREATE SCHEMA {dataset}")

    def drop(self, dataset: str) -> None:
        self.execute(dataset, f"DROP SCHEMA IF EXISTS {dataset} CASCADE")

    def counters(self, dataset: str) -> dict[str, int] | None:
        self.execute(dataset, "SELECT pg_stat_clear_snapshot()")
        row = self.execute(
            dataset, "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0), coalesce(sum(n_tup_upd), 0), "
                     f"coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE schemaname = '{dataset}'")[0]
        return dict(zip(("seq_scan", "idx_scan", "tup_upd", "tup_ins"), (int(x) for x in row), strict=True))

    def server_version(self) -> str:
        return str(self.one("", "SHOW server_version"))

    def driver_version(self) -> str:
        import psycopg

        return f"psycopg {psycopg.__version__}"

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


def mysql_params(url: str) -> dict[str, Any]:
    """PyMySQL's connect() arguments from ``mysql://user:password@host:port/database``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ValueError(f"--mysql-url: expected mysql://user[:password]@host[:port]/database, got {url!r}")
    return {"host": parts.hostname or "127.0.0.1", "port": parts.port or 3306,
            "user": unquote(parts.username or "root"), "password": unquote(parts.password or ""),
            "database": parts.path.lstrip("/") or "test"}


class MariaDB(Engine):
    name = "mariadb"
    label = "MariaDB"
    driver = "pymysql"
    update_returns = False  # MariaDB has INSERT/DELETE ... RETURNING, not UPDATE ... RETURNING
    dataset_kind = "database"

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.params = mysql_params(target)
        self._admin: Any = None

    def connect(self, dataset: str) -> Any:
        import pymysql

        return pymysql.connect(**self.params, autocommit=True,
                               init_command=f"SET SESSION max_statement_time = {STATEMENT_TIMEOUT_S}")

    def broken(self, conn: Any) -> bool:
        return not conn.open

    def execute(self, dataset: str, sql: str) -> list[tuple[Any, ...]]:
        if self._admin is None:
            import pymysql

            self._admin = pymysql.connect(**self.params, autocommit=True)
        with self._admin.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()] if cur.description is not None else []

    def exists(self, dataset: str) -> bool:
        return bool(self.one(dataset, "SELECT count(*) FROM information_schema.schemata "
                                      f"WHERE schema_name = '{dataset}'"))

    def prepare(self, dataset: str) -> None:
        self.execute(dataset, f"CREATE DATABASE {dataset}")

    def drop(self, dataset: str) -> None:
        self.execute(dataset, f"DROP DATABASE IF EXISTS {dataset}")

    def server_version(self) -> str:
        return str(self.one("", "SELECT VERSION()"))

    def driver_version(self) -> str:
        import pymysql

        return f"PyMySQL {pymysql.__version__}"

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


class Sqlite(Engine):
    name = "sqlite"
    label = "SQLite"
    driver = "sqlite3"
    qualified = False  # one dataset per file: its tables are the file's
    dataset_kind = "file"

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self._admin: dict[str, sqlite3.Connection] = {}

    def path(self, dataset: str) -> Path:
        return Path(self.target) / f"{dataset}.db"

    def connect(self, dataset: str) -> Any:
        # Each connection is used by one worker thread only, but the process's main thread opens it
        # (and warms it) before that thread starts: hence check_same_thread=False. The timeout is
        # sqlite's busy timeout: a writer waits that long for another writer's lock.
        conn = sqlite3.connect(self.path(dataset), isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_S,
                               check_same_thread=False)
        # WAL (set in the file when it was generated): readers never wait for the writer.
        # synchronous=NORMAL: a commit does not fsync in WAL mode, as most WAL deployments run it.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def transaction(self, conn: Any) -> Any:
        # IMMEDIATE: take the write lock at BEGIN (waiting up to the busy timeout) instead of at the
        # first write, where a deferred transaction could only fail with SQLITE_BUSY.
        return _explicit_transaction(conn, begin=lambda cur: cur.execute("BEGIN IMMEDIATE"))

    def adapt(self, params: tuple[Any, ...]) -> tuple[Any, ...]:
        # sqlite3 binds neither Decimal nor (without a deprecated default adapter) dates; timestamps are
        # stored as ISO text, which compares in time order with an ISO date.
        return tuple(float(p) if isinstance(p, Decimal) else p.isoformat() if isinstance(p, dt.date) else p
                     for p in params)

    def _conn(self, dataset: str) -> sqlite3.Connection:
        if dataset not in self._admin:
            self._admin[dataset] = sqlite3.connect(self.path(dataset), isolation_level=None,
                                                   timeout=SQLITE_BUSY_TIMEOUT_S)
        return self._admin[dataset]

    def execute(self, dataset: str, sql: str) -> list[tuple[Any, ...]]:
        cur = self._conn(dataset).execute(sql)
        return [tuple(r) for r in cur.fetchall()] if cur.description is not None else []

    def exists(self, dataset: str) -> bool:
        return self.path(dataset).exists()

    def has_column(self, dataset: str, table: str, column: str) -> bool:
        return any(row[1] == column for row in self.execute(dataset, f"PRAGMA table_info({table})"))

    def prepare(self, dataset: str) -> None:
        Path(self.target).mkdir(parents=True, exist_ok=True)
        self.execute(dataset, "PRAGMA journal_mode = WAL")

    def drop(self, dataset: str) -> None:
        conn = self._admin.pop(dataset, None)
        if conn is not None:
            conn.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(self.path(dataset)) + suffix).unlink(missing_ok=True)

    def where(self, dataset: str) -> str:
        return f"file {self.path(dataset)}"

    def server_version(self) -> str:
        return sqlite3.sqlite_version

    def driver_version(self) -> str:
        return f"sqlite3 (Python {platform.python_version()})"

    def close(self) -> None:
        for conn in self._admin.values():
            conn.close()
        self._admin.clear()


def engine(name: str, target: str) -> Engine:
    engines: dict[str, type[Engine]] = {"postgres": Postgres, "mariadb": MariaDB, "sqlite": Sqlite}
    return engines[name](target)
