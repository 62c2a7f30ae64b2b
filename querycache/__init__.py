"""querycache: a multi-tier query cache in front of any PEP 249 connection.

    cache = querycache.QueryCache()
    conn = cache.wrap(sqlite3.connect("shop.db"))
"""

from __future__ import annotations

from querycache.cache import QueryCache
from querycache.config import Config
from querycache.errors import BackendUnavailable, ConfigError, HintError, QueryCacheError
from querycache.stats import StatsSnapshot
from querycache.status import BypassReason

__all__ = [
    "BackendUnavailable",
    "BypassReason",
    "Config",
    "ConfigError",
    "HintError",
    "QueryCache",
    "QueryCacheError",
    "StatsSnapshot",
]
__version__ = "0.1.0"
