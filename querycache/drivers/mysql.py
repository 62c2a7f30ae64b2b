"""MySQL / MariaDB through PyMySQL: state from ``server_status``, catalog from information_schema."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Sequence

from querycache.analysis import fold_identifier as fold
from querycache.drivers.base import Catalog, DBAPIConnection, DriverAdapter, ServerState, view_definition

SERVER_STATUS_IN_TRANS = 1

_LEVELS = {
    "READ-UNCOMMITTED": "read uncommitted",
    "READ-COMMITTED": "read committed",
    "REPEATABLE-READ": "repeatable read",
    "SERIALIZABLE": "serializable",
}


# Session variables that change what a read returns (SET sql_select_limit = 1 truncates every
# SELECT): part of every scope (docs/isolation.md). All exist on MySQL 5.7+ and MariaDB 10.3+.
_RESULT_VARIABLES = ", ".join(f"@@{name}" for name in (
    "sql_select_limit", "group_concat_max_len", "div_precision_increment", "max_sort_length",
    "character_set_results", "character_set_connection", "collation_connection", "lc_time_names",
    "sql_auto_is_null", "default_week_format",
))


class PyMySQLAdapter(DriverAdapter):
    dialect = "mysql"
    family = "mysql"
    # MyISAM / MEMORY writes survive ROLLBACK: every transaction end that wrote bumps.
    bump_on_rollback = True
    execute_returns = "rowcount"
    rows_container = tuple
    supported = True

    def __init__(self, conn: object, module: ModuleType | None) -> None:
        super().__init__(conn, module)
        self._open = False
        self._sql_autocommit: bool | None = None

    def in_transaction(self, conn: Any) -> bool:
        # PyMySQL updates server_status from OK packets only, never after a result set; with
        # autocommit off, InnoDB opens a transaction at any statement, SELECT included.
        return bool(conn.server_status & SERVER_STATUS_IN_TRANS) or self._open

    def _autocommit(self, conn: Any) -> bool:
        if self._sql_autocommit is not None:
            return self._sql_autocommit
        return bool(conn.autocommit_mode)

    def autocommit(self, conn: DBAPIConnection) -> bool:
        return self._autocommit(conn)

    def after_statement(self, conn: DBAPIConnection) -> None:
        if not self._autocommit(conn):
            self._open = True

    def after_transaction_end(self, conn: DBAPIConnection) -> None:
        self._open = False

    def note_autocommit(self, conn: DBAPIConnection, value: bool | None) -> None:
        # PyMySQL caches autocommit_mode client-side; SQL text changes the server without it knowing.
        self._sql_autocommit = value

    def reads_open_transaction(self, conn: DBAPIConnection) -> bool:
        return not self._autocommit(conn)

    def write_opens_transaction(self, conn: DBAPIConnection, is_dml: bool) -> bool:
        return not self._autocommit(conn)

    def server_state(self, conn: DBAPIConnection, settings: Sequence[str],
                     row_security_settings: Sequence[str] | None = None) -> ServerState:
        try:
            server = self.internal_query(conn, "SELECT @@server_uuid")[0][0]
        except Exception:  # noqa: BLE001 - MariaDB has no server_uuid
            server_id, host, port = self.internal_query(conn, "SELECT @@server_id, @@hostname, @@port")[0]
            server = f"{server_id}@{host}:{port}"
        try:
            isolation = self.internal_query(conn, "SELECT @@transaction_isolation")[0][0]
        except Exception:  # noqa: BLE001 - older servers only know tx_isolation
            isolation = self.internal_query(conn, "SELECT @@tx_isolation")[0][0]
        # Settings a settings= hint names are read too (MySQL has no row-level security of its own).
        declared = list(row_security_settings or ())
        extra = "".join(f", @@{_variable(name)}" for name in [*settings, *declared])
        row = self.internal_query(
            conn, "SELECT DATABASE(), CURRENT_USER(), @@time_zone, @@sql_mode, @@read_only, "
                  f"CONCAT_WS(',', {_RESULT_VARIABLES})" + extra
        )[0]
        database, user, tz, sql_mode, read_only, result_variables = row[:6]
        configured = row[6:6 + len(settings)]
        return ServerState(
            f"mysql:{server}:{database}",
            ("mysql", user, database, tz, sql_mode, result_variables, *configured),
            _LEVELS.get(str(isolation).upper(), "unknown"),
            bool(read_only),
            f"mysql:{server}",
            tuple(zip(declared, row[6 + len(settings):], strict=True)),
        )

    def internal_query(self, conn: DBAPIConnection, sql: str, params: Sequence[object] | None = None,
                       keep_transaction: bool = False) -> list[tuple[Any, ...]]:
        # SET sql_select_limit = N truncates every SELECT without a LIMIT of its own: the wrapper's
        # catalog and scope queries carry the largest one (a truncated catalog would miss triggers).
        if sql.lstrip()[:6].upper() == "SELECT":
            sql += " LIMIT 18446744073709551615"
        return super().internal_query(conn, sql, params, keep_transaction)

    def load_catalog(self, conn: DBAPIConnection) -> Catalog:
        catalog = Catalog()
        for (name,) in self.internal_query(conn, "SELECT TABLE_NAME FROM information_schema.TABLES"):
            catalog.relations.add(fold(name))
        views: dict[str, set[str] | None] = {}
        for name, definition in self.internal_query(
            conn, "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS"
        ):
            parsed = view_definition(definition, "mysql")
            views[name] = parsed[1] if parsed else None
            if parsed is None:
                catalog.relations.discard(fold(name))  # unknown definition: reads stay uncached
                continue
            for base in parsed[0]:
                catalog.add_read_dep(name, base)
                catalog.add_write_dep(name, base)
        for (table,) in self.internal_query(
            conn, "SELECT DISTINCT EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS"
        ):
            catalog.writes_everything.add(fold(table))
        for parent, child in self.internal_query(
            conn,
            "SELECT REFERENCED_TABLE_NAME, TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE DELETE_RULE IN ('CASCADE','SET NULL','SET DEFAULT') "
            "OR UPDATE_RULE IN ('CASCADE','SET NULL','SET DEFAULT')",
        ):
            catalog.add_write_dep(parent, child)
        # A stored function that reads tables depends on data the SQL text does not show; one that
        # modifies them is a write. Only DETERMINISTIC NO SQL / CONTAINS SQL functions are cacheable.
        for (name,) in self.internal_query(
            conn, "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'FUNCTION' AND "
                  "(IS_DETERMINISTIC = 'NO' OR SQL_DATA_ACCESS IN ('READS SQL DATA', 'MODIFIES SQL DATA'))"
        ):
            catalog.volatile_functions.add(name.lower())
            catalog.user_volatile_functions.add(name.lower())
        catalog.close_over()
        catalog.drop_volatile_views(views)
        for name, deps in catalog.write_deps.items():
            if deps & catalog.writes_everything:
                catalog.writes_everything.add(name)
        return catalog

    def cursor_shape(self, raw_cursor: object) -> str:
        return type(raw_cursor).__module__ + "." + type(raw_cursor).__qualname__


def _variable(name: str) -> str:
    if not name.replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"scope.settings: {name!r} is not a server variable name")
    return name
