"""The Django app of querycache: its management command (``manage.py querycache stats``)."""

from __future__ import annotations

from django.apps import AppConfig


class QueryCacheConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    name = "querycache.django"
    label = "querycache"
    verbose_name = "querycache"
