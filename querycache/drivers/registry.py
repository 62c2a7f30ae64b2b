"""The driver registry: which adapter serves a connection, by the module its class comes from.

Each adapter module is imported only when a connection of its driver is wrapped, and
``drivers/base.py`` (the contract every adapter implements) knows none of them.
"""

from __future__ import annotations

import importlib
import sys

from querycache.drivers.base import DriverAdapter

# Top-level module of the connection's class -> (adapter "module:class", the DB-API module to pass).
_REGISTRY: dict[str, tuple[str, str]] = {
    "sqlite3": ("querycache.drivers.sqlite:SqliteAdapter", "sqlite3"),
    "_sqlite3": ("querycache.drivers.sqlite:SqliteAdapter", "sqlite3"),
    "psycopg": ("querycache.drivers.postgres:PsycopgAdapter", "psycopg"),
    "psycopg2": ("querycache.drivers.postgres:Psycopg2Adapter", "psycopg2"),
    "pymysql": ("querycache.drivers.mysql:PyMySQLAdapter", "pymysql"),
}


def detect(conn: object) -> DriverAdapter:
    """The adapter for ``conn`` (the generic one for a driver not registered here)."""
    module_name = type(conn).__module__.split(".")[0]
    found = _REGISTRY.get(module_name)
    if found is None:
        return DriverAdapter(conn, sys.modules.get(module_name))
    path, dbapi_module = found
    adapter_module, _, adapter_name = path.partition(":")
    adapter: type[DriverAdapter] = getattr(importlib.import_module(adapter_module), adapter_name)
    return adapter(conn, sys.modules.get(dbapi_module))
