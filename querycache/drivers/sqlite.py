"""sqlite3: transaction state from ``in_transaction``, catalog from ``sqlite_master``."""

from __future__ import annotations

import operator
import os
import sqlite3
import uuid
from typing import Any, Callable, Hashable, Sequence

from querycache.analysis import fold_identifier as fold
from querycache.drivers.base import Catalog, DBAPIConnection, DriverAdapter, ServerState, view_definition

# Built-in scalar and aggregate functions whose result depends only on their arguments.
DETERMINISTIC_FUNCTIONS = frozenset(
    """abs char coalesce concat concat_ws format glob hex ifnull iif instr length octet_length like
    likelihood likely lower ltrim max min nullif printf quote replace round rtrim sign soundex substr
    substring trim typeof unhex unicode unlikely upper zeroblob avg count group_concat string_agg sum
    total acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10
    log2 mod pi pow power radians sin sinh sqrt tan tanh trunc json json_array json_array_length
    json_extract json_insert json_object json_patch json_remove json_replace json_set json_type
    json_valid json_quote json_group_array json_group_object json_each json_tree jsonb date time
    datetime julianday strftime unixepoch timediff row_number rank dense_rank percent_rank cume_dist
    ntile lag lead first_value last_value nth_value cast""".split()
)

_IN_TRANSACTION: Callable[[Any], bool] = operator.attrgetter("in_transaction")
_SHAPE_TOKEN: Callable[[Any], Hashable] = operator.attrgetter("row_factory", "connection.text_factory")


class SqliteAdapter(DriverAdapter):
    dialect = "sqlite"
    family = "sqlite"
    supported = True

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.in_transaction)

    def autocommit(self, conn: Any) -> bool:
        autocommit = getattr(conn, "autocommit", -1)
        if autocommit is True:
            return True
        if autocommit is False:
            return False
        # Legacy transaction control: SELECTs run outside transactions, DML opens one implicitly.
        return conn.isolation_level is None

    def reads_open_transaction(self, conn: DBAPIConnection) -> bool:
        return getattr(conn, "autocommit", -1) is False

    def write_opens_transaction(self, conn: Any, is_dml: bool) -> bool:
        autocommit = getattr(conn, "autocommit", -1)
        if autocommit is True or autocommit is False:
            return not autocommit
        # Legacy transaction control opens a transaction before INSERT/UPDATE/DELETE/REPLACE only.
        return conn.isolation_level is not None and is_dml

    def shape_token(self, raw_cursor: Any) -> tuple[object, object]:
        return (raw_cursor.row_factory, raw_cursor.connection.text_factory)

    def transaction_probe(self, conn: DBAPIConnection) -> Callable[[DBAPIConnection], bool]:
        if isinstance(conn, sqlite3.Connection):
            return _IN_TRANSACTION  # a bool attribute of sqlite3's
        return super().transaction_probe(conn)

    def shape_probe(self, raw_cursor: object) -> Callable[[object], Hashable]:
        if isinstance(raw_cursor, sqlite3.Cursor):
            return _SHAPE_TOKEN  # the same tuple as shape_token, read in C
        return super().shape_probe(raw_cursor)

    def server_state(self, conn: DBAPIConnection, settings: Sequence[str],
                     row_security_settings: Sequence[str] | None = None) -> ServerState:
        rows = self.internal_query(conn, "PRAGMA database_list")
        main = next((r for r in rows if r[1] == "main"), None)
        path = main[2] if main else ""
        if path:
            database_id = "sqlite:" + os.path.realpath(path)
        else:
            # :memory: and temporary databases are private to their connection.
            database_id = f"sqlite:memory:{uuid.uuid4().hex}"
        attached = tuple(sorted((r[1], r[2]) for r in rows if r[1] not in ("main", "temp")))
        return ServerState(database_id, ("sqlite", attached), "serializable-snapshot", False, "sqlite")

    def load_catalog(self, conn: DBAPIConnection) -> Catalog:
        catalog = Catalog(deterministic_functions=set(DETERMINISTIC_FUNCTIONS))
        rows = self.internal_query(conn, "SELECT type, name, tbl_name, sql FROM sqlite_master")
        catalog.relations |= {"sqlite_master", "sqlite_schema", "sqlite_sequence", "sqlite_temp_master"}
        tables = []
        views: dict[str, set[str] | None] = {}
        for kind, name, tbl_name, sql in rows:
            if kind == "table":
                catalog.relations.add(fold(name))
                tables.append(name)
            elif kind == "view":
                parsed = view_definition(sql, "sqlite")
                views[name] = parsed[1] if parsed else None
                if parsed is None:
                    continue  # unparseable definition: reads of the view stay uncached
                catalog.relations.add(fold(name))
                for base in parsed[0]:
                    if base != fold(name):
                        catalog.add_read_dep(name, base)
                        catalog.add_write_dep(name, base)
                catalog.writes_everything.add(fold(name))  # writes to a view go through INSTEAD OF triggers
            elif kind == "trigger":
                catalog.writes_everything.add(fold(tbl_name))
        for child in tables:
            quoted = '"' + child.replace('"', '""') + '"'
            for fk in self.internal_query(conn, f"PRAGMA foreign_key_list({quoted})"):
                parent, on_update, on_delete = fk[2], fk[5], fk[6]
                if (on_update.upper() != "NO ACTION" and on_update.upper() != "RESTRICT") or (
                    on_delete.upper() not in ("NO ACTION", "RESTRICT")
                ):
                    catalog.add_write_dep(parent, child)
        catalog.close_over()
        catalog.drop_volatile_views({
            name: (None if functions is None or functions - DETERMINISTIC_FUNCTIONS else functions)
            for name, functions in views.items()
        })
        return catalog

    def cursor_shape(self, raw_cursor: object) -> str:
        return ":".join(_callable_name(f) for f in self.shape_token(raw_cursor))


def _callable_name(factory: object) -> str:
    if factory is None:
        return "default"
    return f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', repr(factory))}"
