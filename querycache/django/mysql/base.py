"""``ENGINE: "querycache.django.mysql"``: Django's MySQL backend over a wrapped PyMySQL connection.

querycache wraps PyMySQL, not mysqlclient (``MySQLdb``): Django's backend imports ``MySQLdb``, so when
mysqlclient is not installed this installs PyMySQL under that name (``pymysql.install_as_MySQLdb()``,
PyMySQL's own way of serving Django); with mysqlclient installed it refuses to load.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured

if "MySQLdb" not in sys.modules and importlib.util.find_spec("MySQLdb") is None:
    try:
        import pymysql
    except ModuleNotFoundError as exc:
        raise ImproperlyConfigured("querycache.django.mysql needs PyMySQL: pip install 'querycache[mysql,django]'") \
            from exc
    pymysql.install_as_MySQLdb()

import MySQLdb  # PyMySQL, when installed under that name above

if not MySQLdb.__name__.startswith("pymysql"):
    raise ImproperlyConfigured("querycache.django.mysql wraps PyMySQL connections, and mysqlclient (MySQLdb) is "
                               "installed: uninstall mysqlclient (pip uninstall mysqlclient) so that PyMySQL serves "
                               "Django, or use ENGINE 'django.db.backends.mysql' without querycache")

from django.db.backends.mysql import base, operations  # after MySQLdb is known to be PyMySQL
from django.utils.encoding import force_str

from querycache.django.backend import CachedDatabaseWrapperMixin


class DatabaseOperations(operations.DatabaseOperations):  # type: ignore[misc]  # Django is untyped
    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str | None:
        # Django reads PyMySQL's ``cursor._executed``, empty when the cache answered (nothing was sent);
        # PyMySQL builds what it sends with mogrify(), so this is the same text either way.
        return str(force_str(cursor.mogrify(sql, params), errors="replace"))


class DatabaseWrapper(CachedDatabaseWrapperMixin, base.DatabaseWrapper):  # type: ignore[misc]  # Django is untyped
    ops_class = DatabaseOperations
