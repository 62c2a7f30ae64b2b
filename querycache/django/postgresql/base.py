"""``ENGINE: "querycache.django.postgresql"``: Django's PostgreSQL backend over a wrapped connection
(psycopg 3 or psycopg2, whichever Django picks)."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base

from querycache.django.backend import CachedDatabaseWrapperMixin


class DatabaseWrapper(CachedDatabaseWrapperMixin, base.DatabaseWrapper):  # type: ignore[misc]  # Django is untyped
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self.settings_dict["OPTIONS"].get("pool"):
            from django.core.exceptions import ImproperlyConfigured

            # Django's pool hands its psycopg connections back with putconn(), past the wrapper.
            raise ImproperlyConfigured(f"DATABASES[{self.alias!r}]['OPTIONS']['pool']: Django's connection pool is "
                                       "not supported by querycache.django.postgresql; use CONN_MAX_AGE for "
                                       "persistent connections")
        return super().get_new_connection(conn_params)

    def is_usable(self) -> bool:
        """Django's health check (``CONN_HEALTH_CHECKS``), with its ``SELECT 1`` kept from the cache: a
        read without tables, which the cache would answer for a connection the server closed."""
        if self.connection is None:
            return False
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("/* cache skip */ SELECT 1")
        except self.Database.Error:
            return False
        return True

    def create_cursor(self, name: str | None = None) -> Any:
        if name is None:
            return super().create_cursor()
        # A named cursor (QuerySet.iterator()) is a server-side cursor Django builds on the driver's
        # connection itself: it reads from the database, never from the cache.
        wrapped = self.connection
        self.connection = wrapped.wrapped
        try:
            return super().create_cursor(name)
        finally:
            self.connection = wrapped
