"""Django: database backends that put querycache in front of the connection Django's own backend opens
(docs/integrations.md).

``DATABASES = {"default": {"ENGINE": "querycache.django.postgresql", ...}}`` (also ``.sqlite3``,
``.mysql``), configured from ``settings.QUERYCACHE`` (the dict ``Config.from_dict`` takes; a database's
own ``"QUERYCACHE"`` key overrides it); ``"querycache.django"`` in ``INSTALLED_APPS`` adds
``manage.py querycache stats``. Nothing here is imported by ``import querycache``.
"""

from __future__ import annotations

from querycache.django.backend import cache_for, cache_of

__all__ = ["cache_for", "cache_of"]
