"""What the querycache Django backends share: one QueryCache per configuration per process, and the
wrap of the connection Django's own backend opened (docs/integrations.md, "Django").

Django drives transactions through the connection: ``autocommit`` is set on it (PostgreSQL, MySQL) or
``isolation_level`` (sqlite), ``commit()`` and ``rollback()`` are called on it, savepoints are SQL run
through its cursors. With the connection wrapped, every one of those goes through the wrapper's
transaction tracking, as for any wrapped connection (docs/freshness.md, "Transactions").
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, Mapping

from querycache.cache import QueryCache
from querycache.config import Config
from querycache.errors import ConfigError

if TYPE_CHECKING:
    from querycache.connection import CachedConnection

__all__ = ["CachedDatabaseWrapperMixin", "cache_for", "cache_of", "configuration_of"]

_caches: dict[str, QueryCache] = {}
_lock = threading.Lock()


def configuration_of(settings_dict: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The querycache configuration of one ``DATABASES`` entry, and where it was read: its own
    ``"QUERYCACHE"`` key, else ``settings.QUERYCACHE``, else the embedded defaults."""
    from django.conf import settings

    if "QUERYCACHE" in settings_dict:
        where, found = "DATABASES[...]['QUERYCACHE']", settings_dict["QUERYCACHE"]
    else:
        where, found = "settings.QUERYCACHE", getattr(settings, "QUERYCACHE", None)
    if found is None:
        return where, {}
    if not isinstance(found, Mapping):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{where} must be a dict in the shape of querycache's configuration "
                                   f"(docs/configuration.md), got {type(found).__name__}")
    return where, found


def cache_for(data: Mapping[str, Any], where: str = "settings.QUERYCACHE") -> QueryCache:
    """The process's QueryCache for this configuration: created on first use, the same one after."""
    try:
        key = json.dumps(data, sort_keys=True, default=repr)
    except (TypeError, ValueError) as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{where}: not a configuration dict ({exc})") from exc
    with _lock:
        cache = _caches.get(key)
        if cache is None or cache._closed:
            try:
                config = Config.from_dict(data)
            except ConfigError as exc:
                from django.core.exceptions import ImproperlyConfigured

                raise ImproperlyConfigured(f"{where}: {exc}") from exc
            cache = _caches[key] = QueryCache(config)
        return cache


def cache_of(alias: str = "default") -> QueryCache:
    """The QueryCache of the querycache backend of ``DATABASES[alias]``."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    connection = connections[alias]
    if not isinstance(connection, CachedDatabaseWrapperMixin):
        raise ImproperlyConfigured(f"DATABASES[{alias!r}] does not use a querycache backend (ENGINE is "
                                   f"{connection.settings_dict.get('ENGINE')!r}; accepted: "
                                   "'querycache.django.postgresql', 'querycache.django.sqlite3', "
                                   "'querycache.django.mysql')")
    return connection.querycache


class CachedDatabaseWrapperMixin:
    """Put before Django's ``DatabaseWrapper`` in the bases: its new connections come wrapped."""

    settings_dict: dict[str, Any]
    connection: Any

    @property
    def querycache(self) -> QueryCache:
        where, data = configuration_of(self.settings_dict)
        return cache_for(data, where)

    def get_new_connection(self, conn_params: dict[str, Any]) -> CachedConnection:
        cache = self.querycache  # a configuration error is raised before connecting
        raw = super().get_new_connection(conn_params)  # type: ignore[misc]
        try:
            return cache.wrap(raw)
        except BaseException:
            raw.close()
            raise

    @property
    def raw_connection(self) -> Any:
        """The driver connection under the wrapper (None before connecting)."""
        connection = self.connection
        return None if connection is None else connection.wrapped
