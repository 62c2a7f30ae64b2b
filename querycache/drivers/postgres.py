"""PostgreSQL through psycopg 3 and psycopg2: state, scope and the catalog's hidden dependencies."""

from __future__ import annotations

from typing import Any, Hashable, Sequence

from querycache.drivers.base import Catalog, DBAPIConnection, DriverAdapter, ServerState, view_definition
from querycache.drivers.row_security import row_security

# Settings that change what a read returns (or how the driver decodes it) are part of every scope:
# docs/isolation.md, "What a scope is made of".
_RESULT_SETTINGS = (
    "extra_float_digits", "standard_conforming_strings", "transform_null_equals", "array_nulls",
    "default_text_search_config", "lc_monetary", "lc_numeric", "lc_time", "client_encoding", "bytea_output",
    "xmloption", "xmlbinary",
)
_SCOPE_SQL = (
    "SELECT current_user, current_database(), current_setting('search_path'), "
    "current_setting('TimeZone'), current_setting('DateStyle'), current_setting('IntervalStyle'), "
    "current_setting('transaction_isolation'), pg_is_in_recovery(), "
    "coalesce(inet_server_addr()::text, ''), coalesce(inet_server_port(), 0), "
    "concat_ws(',', " + ", ".join(f"current_setting('{name}')" for name in _RESULT_SETTINGS) + ")"
)
_SYSTEM_ID_SQL = "SELECT system_identifier::text FROM pg_control_system()"
_RELATIONS_SQL = "SELECT c.relname, c.relkind FROM pg_class c WHERE c.relkind IN ('r','v','m','p','f')"
_VIEW_DEPS_SQL = """
SELECT DISTINCT v.relname, t.relname
FROM pg_rewrite r
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
JOIN pg_class t ON t.oid = d.refobjid AND d.refclassid = 'pg_class'::regclass
WHERE v.relkind IN ('v', 'm') AND t.oid <> v.oid
"""
_INHERITS_SQL = """
SELECT c.relname, p.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
"""
_TRIGGERS_SQL = """
SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE NOT t.tgisinternal AND t.tgname <> 'querycache_capture'
"""
_RULES_SQL = """
SELECT DISTINCT c.relname FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
WHERE r.ev_type <> '1'
"""
_CASCADE_SQL = """
SELECT p.relname, c.relname FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid
WHERE k.contype = 'f' AND (k.confdeltype IN ('c','n','d') OR k.confupdtype IN ('c','n','d'))
"""
_VOLATILE_SQL = "SELECT DISTINCT lower(proname) FROM pg_proc WHERE provolatile <> 'i'"
# Functions outside the system schemas: a read that calls a non-immutable one may write.
_USER_VOLATILE_SQL = """
SELECT DISTINCT lower(p.proname) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.provolatile <> 'i' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""
# System views (pg_catalog, information_schema: about 140 of them) are never cached: their definitions
# are not fetched, nor parsed (that was about 0.26 s after every DDL statement, a CREATE TEMP TABLE
# included). Most call functions that are not immutable anyway.
_VIEW_DEFS_SQL = """
SELECT c.relname, CASE WHEN n.nspname IN ('pg_catalog', 'information_schema') THEN NULL
                       ELSE pg_get_viewdef(c.oid) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
"""
_IMMUTABLE_SQL = "SELECT DISTINCT lower(proname) FROM pg_proc WHERE provolatile = 'i'"
# Tables with row-level security and the policies a read is subject to (SELECT and ALL commands).
_ROW_SECURITY_SQL = """
SELECT c.relname, c.relforcerowsecurity, p.polname,
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polcmd IN ('r', '*')
WHERE c.relrowsecurity ORDER BY c.relname, p.polname
"""
# What those policies depend on that their text may hide: user functions (built-ins are pinned and
# never recorded), with their language and body, and other relations (a subquery).
_POLICY_DEPENDS_SQL = """
SELECT c.relname, d.refclassid = 'pg_proc'::regclass, coalesce(f.proname, r.relname), l.lanname, f.prosrc
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid
LEFT JOIN pg_proc f ON d.refclassid = 'pg_proc'::regclass AND f.oid = d.refobjid
LEFT JOIN pg_language l ON l.oid = f.prolang
LEFT JOIN pg_class r ON d.refclassid = 'pg_class'::regclass AND r.oid = d.refobjid
WHERE c.relrowsecurity AND p.polcmd IN ('r', '*')
  AND (d.refclassid = 'pg_proc'::regclass OR (d.refclassid = 'pg_class'::regclass AND d.refobjid <> p.polrelid))
"""
# What a policy can read of the session beyond the scope every read has: who logged in, whether
# row security is on for it; then each setting a policy names.
_ROW_SECURITY_SCOPE_SQL = ", session_user, current_setting('row_security')"

_LEVELS = {
    "read uncommitted": "read committed",  # PostgreSQL runs READ UNCOMMITTED as READ COMMITTED
    "read committed": "read committed",
    "repeatable read": "repeatable read",
    "serializable": "serializable",
}


class _PostgresAdapter(DriverAdapter):
    dialect = "postgres"
    family = "postgres"
    supported = True

    def server_state(self, conn: DBAPIConnection, settings: Sequence[str],
                     row_security_settings: Sequence[str] | None = None) -> ServerState:
        names = [*settings, *(row_security_settings or ())]
        extra = "".join(", current_setting(%s, true)" for _ in names)
        if row_security_settings is not None:
            extra += _ROW_SECURITY_SCOPE_SQL
        row = self.internal_query(conn, _SCOPE_SQL + extra, names or None)[0]
        configured = row[11:11 + len(settings)]
        row_security_scope: tuple[Any, ...] = ()
        if row_security_settings is not None:
            row_security_scope = (*zip(row_security_settings, row[11 + len(settings):11 + len(names)], strict=True),
                                  *row[11 + len(names):])
        user, database, search_path, tz, datestyle, intervalstyle, isolation, recovery, host, port = row[:10]
        try:
            system_id = self.internal_query(conn, _SYSTEM_ID_SQL)[0][0]
        except Exception:  # noqa: BLE001 - pg_control_system() may be revoked; fall back to the address
            system_id = f"{host}:{port}"
        database_id = f"postgres:{system_id}:{database}"
        scope = ("postgres", user, search_path, tz, datestyle, intervalstyle, row[10], *configured)
        return ServerState(database_id, scope, _LEVELS.get(str(isolation).lower(), "unknown"), bool(recovery),
                           database_id, row_security_scope)

    def load_catalog(self, conn: DBAPIConnection) -> Catalog:
        catalog = Catalog()
        for name, _kind in self.internal_query(conn, _RELATIONS_SQL):
            catalog.relations.add(name.lower())
        for view, base in self.internal_query(conn, _VIEW_DEPS_SQL):
            catalog.add_read_dep(view, base)
            catalog.add_write_dep(view, base)  # auto-updatable views write their base table
        for child, parent in self.internal_query(conn, _INHERITS_SQL):
            # A write to either side can change what a read of the other returns.
            catalog.add_read_dep(child, parent)
            catalog.add_read_dep(parent, child)
            catalog.add_write_dep(child, parent)
            catalog.add_write_dep(parent, child)
        for (table,) in self.internal_query(conn, _TRIGGERS_SQL):
            catalog.writes_everything.add(table.lower())
        for (table,) in self.internal_query(conn, _RULES_SQL):
            catalog.writes_everything.add(table.lower())
        for parent, child in self.internal_query(conn, _CASCADE_SQL):
            catalog.add_write_dep(parent, child)
        immutable = {name for (name,) in self.internal_query(conn, _IMMUTABLE_SQL)}
        catalog.volatile_functions = {name for (name,) in self.internal_query(conn, _VOLATILE_SQL)}
        catalog.deterministic_functions = immutable - catalog.volatile_functions
        catalog.user_volatile_functions = {name for (name,) in self.internal_query(conn, _USER_VOLATILE_SQL)}
        catalog.close_over()
        definitions = {name: view_definition(sql, "postgres")
                       for name, sql in self.internal_query(conn, _VIEW_DEFS_SQL)}
        catalog.drop_volatile_views({name: parsed[1] if parsed else None for name, parsed in definitions.items()})
        # Triggers on a table reached through a cascade fire too.
        for name, deps in catalog.write_deps.items():
            if deps & catalog.writes_everything:
                catalog.writes_everything.add(name)
        self._load_row_security(conn, catalog, frozenset(immutable))
        return catalog

    def _load_row_security(self, conn: DBAPIConnection, catalog: Catalog, immutable: frozenset[str]) -> None:
        """What each table with row-level security shows depends on (docs/isolation.md). Tables of
        one name in several schemas are merged: what any of them reads, all of them read."""
        policies: dict[str, list[tuple[str, str | None, str | None]]] = {}
        forced: dict[str, bool] = {}
        for table, force, name, using, check in self.internal_query(conn, _ROW_SECURITY_SQL):
            key = table.lower()
            forced[key] = forced.get(key, False) or bool(force)
            entries = policies.setdefault(key, [])
            if name is not None:
                entries.append((name, using, check))
        functions: dict[str, set[tuple[str, str, str]]] = {}
        others: dict[str, set[str]] = {}
        for table, is_function, name, language, body in self.internal_query(conn, _POLICY_DEPENDS_SQL):
            if is_function:
                functions.setdefault(table.lower(), set()).add((str(name).lower(), str(language), body or ""))
            else:
                others.setdefault(table.lower(), set()).add(str(name).lower())
        for table, entries in policies.items():
            # The query already leaves out the policy's own table; a relation of the same name in
            # another schema is another relation (opaque, and a dependency).
            found = row_security(table, forced[table], entries, immutable, functions.get(table, ()),
                                 others.get(table, ()))
            catalog.row_security[table] = found
            for other in found.reads_tables:
                # A policy's subquery: a write to the table it reads changes what this one shows.
                catalog.add_read_dep(table, other)
        if catalog.row_security:
            catalog.close_over()


class PsycopgAdapter(_PostgresAdapter):
    """psycopg 3."""

    # The libpq status as an int, from ``Connection.pgconn`` (``conn.info.transaction_status``
    # builds a ConnectionInfo and an enum member on each call: 15x slower, read on every execute).
    def in_transaction(self, conn: Any) -> bool:
        return int(conn.pgconn.transaction_status) != 0  # IDLE

    def in_error(self, conn: Any) -> bool:
        return int(conn.pgconn.transaction_status) == 3  # INERROR

    def driver_isolation(self, conn: Any) -> str | None:
        level = conn.isolation_level
        if level is None:
            return None
        return _LEVELS.get(level.name.replace("_", " ").lower(), "unknown")

    def shape_token(self, raw_cursor: Any) -> Hashable:
        return (type(raw_cursor), raw_cursor.row_factory)

    def cursor_shape(self, raw_cursor: Any) -> str:
        factory = raw_cursor.row_factory
        return f"{type(raw_cursor).__qualname__}:{getattr(factory, '__module__', '')}." \
               f"{getattr(factory, '__qualname__', repr(factory))}"


class Psycopg2Adapter(_PostgresAdapter):
    """psycopg2."""

    execute_returns = "none"

    def in_transaction(self, conn: Any) -> bool:
        return int(conn.get_transaction_status()) != 0  # TRANSACTION_STATUS_IDLE

    def in_error(self, conn: Any) -> bool:
        return int(conn.get_transaction_status()) == 3  # TRANSACTION_STATUS_INERROR

    def driver_isolation(self, conn: Any) -> str | None:
        level = conn.isolation_level
        names = {1: "read committed", 2: "repeatable read", 3: "serializable", 4: "read committed"}
        return names.get(level) if level is not None else None
