"""``manage.py querycache stats``: what ``python -m querycache stats`` prints, for the cache of a
querycache database backend of this project (``--database``, default ``default``)."""

from __future__ import annotations

import io
import json
from typing import Any

import click
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console

from querycache.cli import _SORTS, _fleet, _print_stats
from querycache.django.backend import cache_of


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped
    help = "querycache: `stats` prints the counters of the cache in front of a database (as `querycache stats`)."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True, metavar="stats")
        stats = commands.add_parser("stats", help="Counters of the cache, summed over the processes sharing its store.")
        stats.add_argument("--database", default="default", help="The DATABASES alias (default: default).")
        stats.add_argument("--json", action="store_true", dest="as_json", help="Print one JSON object.")
        stats.add_argument("--top", type=int, default=10, help="How many statement fingerprints to list.")
        stats.add_argument("--sort", choices=tuple(_SORTS), default="time_saved")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            cache = cache_of(options["database"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        try:
            data = _fleet(cache, options["top"], options["sort"])
        except click.ClickException as exc:
            raise CommandError(exc.message) from exc
        if options["as_json"]:
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            out = io.StringIO()
            _print_stats(Console(file=out, width=120), data)
            self.stdout.write(out.getvalue(), ending="")
