"""The exception hierarchy: one root, each error also subclassing the builtin it resembles."""

from __future__ import annotations


class QueryCacheError(Exception):
    """Root of every error raised by querycache itself (never by the wrapped database)."""


class ConfigError(QueryCacheError, ValueError):
    """A configuration value is missing, of the wrong type, or out of range."""


class HintError(QueryCacheError, ValueError):
    """A ``/* cache ... */`` hint is malformed (raised only with ``hints.strict: true``)."""


class BackendUnavailable(QueryCacheError, ConnectionError):
    """The shared store could not be reached; callers fail open."""
