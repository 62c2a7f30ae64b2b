"""The shared L2 store on Redis: ``backend`` (the store and the clock), ``scripts`` (its Lua),
``subscriber`` (the version mirror and coherence lease of this process)."""

from querycache.backends.redis.backend import RedisBackend, _hashed
from querycache.backends.redis.scripts import _NO_LEASE, CHANNEL, CLOCK, FILLS, HOLDERS

__all__ = ["CHANNEL", "CLOCK", "FILLS", "HOLDERS", "_NO_LEASE", "RedisBackend", "_hashed"]
