"""``ENGINE: "querycache.django.sqlite3"``: Django's sqlite3 backend over a wrapped connection.

Django writes ``%s`` placeholders and its sqlite cursor class turns them into ``?`` inside ``execute``;
the cache must see the statement the driver runs, so here the conversion happens first, in a thin
cursor in front of the wrapped one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import tee
from typing import Any

from django.db.backends.sqlite3 import base

from querycache.django.backend import CachedDatabaseWrapperMixin

_convert_query = base.SQLiteCursorWrapper.convert_query  # it reads nothing of its cursor


class QmarkCursor:
    """Django's format/pyformat to qmark/named conversion, before the wrapped cursor sees the statement."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def execute(self, query: str, params: Any = None) -> QmarkCursor:
        if params is None:
            self.cursor.execute(query)
        else:
            names = list(params) if isinstance(params, Mapping) else None
            self.cursor.execute(_convert_query(self, query, param_names=names), params)
        return self

    def executemany(self, query: str, param_list: Any) -> QmarkCursor:
        peek, param_list = tee(iter(param_list))
        first = next(peek, None)
        names = list(first) if first and isinstance(first, Mapping) else None
        self.cursor.executemany(_convert_query(self, query, param_names=names), param_list)
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(self.cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


class DatabaseWrapper(CachedDatabaseWrapperMixin, base.DatabaseWrapper):  # type: ignore[misc]  # Django is untyped
    def create_cursor(self, name: str | None = None) -> QmarkCursor:
        return QmarkCursor(self.connection.cursor())
