"""Django on the querycache backends (querycache/django/): a slice of Django-ORM expectations run on the
plain backend and on the querycache one, on PostgreSQL, sqlite and MariaDB.

The script (``script``) runs filters, ``select_related``, ``prefetch_related``, aggregates and
``annotate``, queryset updates, ``atomic()`` with a rollback, nested savepoints (one rolled back),
``on_commit``, deletes; every read runs twice. Each backend runs it on tables of its own; every
result must be equal to the plain backend's, every read after a write must show it (literal
expectations), and the cached run must have had cache hits.

Django's settings are configured once per process, here, at import: this module is the only one of
the suite that configures Django in-process (the example site runs in a subprocess).
"""

from __future__ import annotations

import atexit
import io
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

from tests.conftest import MYSQL, PG_DSN, SHARED_REDIS, make_database, shared_redis_up  # noqa: E402

PREFIX = "qcdj" + uuid.uuid4().hex[:8]
# A Redis store of this run's own namespace, for the database "qc_redis".
REDIS_QUERYCACHE = {"l2": {"backend": "redis", "url": SHARED_REDIS, "namespace": f"{PREFIX}-django"},
                    "stats": {"publish_interval_s": 3600}}
_SQLITE_DIR = Path(tempfile.mkdtemp(prefix="querycache-django-"))
atexit.register(shutil.rmtree, _SQLITE_DIR, True)
_PG = dict(item.split("=", 1) for item in PG_DSN.split())


def _pg(engine: str) -> dict[str, Any]:
    return {"ENGINE": engine, "NAME": _PG.get("dbname", "test"), "USER": _PG.get("user", "postgres"),
            "HOST": _PG.get("host", "127.0.0.1"), "PORT": _PG.get("port", "5432")}


def _mysql(engine: str) -> dict[str, Any]:
    return {"ENGINE": engine, "NAME": MYSQL["database"], "USER": MYSQL["user"], "PASSWORD": MYSQL["password"],
            "HOST": MYSQL["host"], "PORT": str(MYSQL["port"])}


ALIASES = {
    "postgres": ("plain_pg", "qc_pg"),
    "sqlite": ("plain_sqlite", "qc_sqlite"),
    "mysql": ("plain_mysql", "qc_mysql"),
}

if not settings.configured:
    import pymysql

    pymysql.install_as_MySQLdb()  # the plain MySQL backend too runs on PyMySQL, as in a PyMySQL project
    DATABASES = {
        "default": _pg("django.db.backends.postgresql"),
        "plain_pg": _pg("django.db.backends.postgresql"),
        "qc_pg": _pg("querycache.django.postgresql"),
        "plain_sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(_SQLITE_DIR / "plain.db")},
        "qc_sqlite": {"ENGINE": "querycache.django.sqlite3", "NAME": str(_SQLITE_DIR / "qc.db")},
        # Django's MySQL backend over PyMySQL (querycache.django.mysql installs it as MySQLdb).
        "plain_mysql": _mysql("django.db.backends.mysql"),
        "qc_mysql": _mysql("querycache.django.mysql"),
        "qc_other": {**_pg("querycache.django.postgresql"), "QUERYCACHE": {"l1": {"max_entries": 50}}},
        "qc_redis": {**_pg("querycache.django.postgresql"), "QUERYCACHE": REDIS_QUERYCACHE},
        "qc_pool": {**_pg("querycache.django.postgresql"), "OPTIONS": {"pool": True}},
    }
    # The script's observers: another connection to each database (the same cache for querycache's).
    DATABASES.update({alias + "_b": dict(DATABASES[alias]) for pair in ALIASES.values() for alias in pair})
    settings.configure(DATABASES=DATABASES, INSTALLED_APPS=["querycache.django"],
                       QUERYCACHE={"ttl": {"default_s": 600}}, USE_TZ=True, TIME_ZONE="UTC")
    django.setup()

from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.db import connections, models, transaction  # noqa: E402
from django.db.models import Avg, Count, F, Max, Q, Sum  # noqa: E402

from querycache.connection import CachedConnection  # noqa: E402
from querycache.django import cache_of  # noqa: E402


def _model(class_name: str, table: str, /, **fields: Any) -> Any:
    meta = type("Meta", (), {"app_label": "querycache", "db_table": table})
    return type(class_name, (models.Model,), {"__module__": __name__, "Meta": meta, **fields})


def make_models(tag: str) -> SimpleNamespace:
    """Author -> books (one-to-many), books <-> tags (many-to-many), on tables named for ``tag``."""
    prefix = f"{PREFIX}_{tag}"
    author = _model(f"Author_{tag}", f"{prefix}_author", name=models.CharField(max_length=50))
    tag_model = _model(f"Tag_{tag}", f"{prefix}_tag", name=models.CharField(max_length=30))
    book = _model(f"Book_{tag}", f"{prefix}_book", title=models.CharField(max_length=80),
                  price=models.IntegerField(),
                  author=models.ForeignKey(author, on_delete=models.CASCADE, related_name="books"),
                  tags=models.ManyToManyField(tag_model, related_name="books", db_table=f"{prefix}_book_tags"))
    return SimpleNamespace(Author=author, Tag=tag_model, Book=book)


MODELS = {alias: make_models(alias) for pair in ALIASES.values() for alias in pair}


def _probe(kind: str, tmp_path: Path) -> None:
    if kind != "sqlite":
        make_database(kind, tmp_path)  # skips (fails under CI=true) when the server is down


@pytest.fixture
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The plain and the querycache alias of the database kind, with the script's tables created."""
    kind = request.param
    _probe(kind, tmp_path)
    aliases = ALIASES[kind]
    for alias in aliases:
        m = MODELS[alias]
        with connections[alias].schema_editor() as editor:
            for model in (m.Author, m.Tag, m.Book):
                editor.create_model(model)
    try:
        yield aliases
    finally:
        for alias in aliases:
            m = MODELS[alias]
            connections[alias + "_b"].close()
            connection = connections[alias]
            connection.close()
            with connection.schema_editor() as editor:
                for model in (m.Book, m.Tag, m.Author):
                    editor.delete_model(model)
            connection.close()


class Rollback(Exception):
    pass


class Using:
    """A model's manager on the database ``where[0]`` names at each call (the script's reads run on the
    writer's connection, then on an observer's)."""

    def __init__(self, model: Any, where: list[str]) -> None:
        self.model = model
        self.where = where

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model.objects.using(self.where[0]), name)


def script(alias: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """Every result in order, by label, and the reads that did not show what a write before them made.

    Every read runs twice on ``<alias>_b``, another connection to the same database, then twice on ``alias``
    (the writer); for querycache both share the cache: outside a transaction the observer must see
    what the writer committed; inside one, what was committed before it."""
    m = MODELS[alias]
    where = [alias]
    Author, Book, Tag = Using(m.Author, where), Using(m.Book, where), Using(m.Tag, where)
    writer = connections[alias]
    results: list[tuple[str, Any]] = []
    stale: list[str] = []

    def read(label: str, query: Callable[[], Any], expected: Any = None) -> Any:
        # The observer first: after a commit, before the writer's connection runs anything again.
        where[0] = alias + "_b"
        try:
            seen = [query(), query()]
        finally:
            where[0] = alias
        first = query()
        again = query()
        results.append((label, first))
        results.append((label + " again", again))
        results.append((label + " observer", seen))
        if first != again:
            stale.append(f"{label}: {first!r} then {again!r}")
        if expected is not None and first != expected:
            stale.append(f"{label}: {first!r}, expected {expected!r}")
        if not writer.in_atomic_block and writer.get_autocommit() and seen != [first, first]:
            stale.append(f"{label}: the observer read {seen!r}, the writer {first!r}")
        return first

    ann, bob = Author.create(name="ann"), Author.create(name="bob")
    red, blue = Tag.create(name="red"), Tag.create(name="blue")
    books = [Book.create(title=f"b{i}", price=10 * i, author=ann if i % 2 else bob) for i in range(1, 7)]
    for book in books[:3]:
        book.tags.add(red)
    for book in books[2:]:
        book.tags.add(blue)

    def titles(qs: Any) -> list[str]:
        return list(qs.order_by("id").values_list("title", flat=True))

    read("filter", lambda: titles(Book.filter(price__gte=30)), ["b3", "b4", "b5", "b6"])
    read("filter q", lambda: titles(Book.filter(Q(price__lt=20) | Q(title="b6")).exclude(author=bob)), ["b1"])
    read("in", lambda: titles(Book.filter(id__in=[books[0].id, books[4].id])), ["b1", "b5"])
    read("get", lambda: Book.get(title="b2").price, 20)
    read("count exists", lambda: (Book.filter(author=ann).count(), Book.filter(title="nope").exists()), (3, False))
    read("select_related", lambda: [(b.title, b.author.name) for b in Book.select_related("author").order_by("id")],
         [(f"b{i}", "ann" if i % 2 else "bob") for i in range(1, 7)])
    read("prefetch", lambda: [(b.title, [t.name for t in b.tags.order_by("id")])
                              for b in Book.prefetch_related("tags").order_by("id")])
    read("reverse fk", lambda: titles(Author.get(name="bob").books.all()), ["b2", "b4", "b6"])
    read("m2m filter", lambda: titles(Book.filter(tags__name="red")), ["b1", "b2", "b3"])
    read("aggregate", lambda: Book.aggregate(total=Sum("price"), n=Count("id"), top=Max("price")),
         {"total": 210, "n": 6, "top": 60})
    read("annotate", lambda: list(Author.annotate(n=Count("books"), total=Sum("books__price"))
                                  .order_by("id").values_list("name", "n", "total")),
         [("ann", 3, 90), ("bob", 3, 120)])
    read("annotate m2m", lambda: list(Tag.annotate(n=Count("books")).order_by("name").values_list("name", "n")),
         [("blue", 4), ("red", 3)])
    read("avg", lambda: round(float(Book.filter(author=ann).aggregate(a=Avg("price"))["a"]), 2), 30.0)

    # A queryset update, then the reads it changes.
    Book.filter(author=ann).update(price=F("price") + 1)
    read("after update", lambda: Book.aggregate(total=Sum("price"))["total"], 213)
    read("after update filter", lambda: titles(Book.filter(price=11)), ["b1"])

    # atomic() rolled back: its writes were seen inside, and are gone after.
    try:
        with transaction.atomic(using=alias):
            Book.filter(title="b1").update(price=1000)
            Book.create(title="ghost", price=1, author=bob)
            read("inside atomic", lambda: (Book.get(title="b1").price, Book.filter(title="ghost").count()), (1000, 1))
            raise Rollback
    except Rollback:
        pass
    read("after rollback", lambda: (Book.get(title="b1").price, Book.filter(title="ghost").count()), (11, 0))

    # Nested savepoints: the inner one rolled back, the outer committed.
    with transaction.atomic(using=alias):
        read("outer before", lambda: Book.get(title="b2").price, 20)
        Book.filter(title="b2").update(price=22)
        try:
            with transaction.atomic(using=alias):
                Book.filter(title="b2").update(price=2222)
                read("inner", lambda: Book.get(title="b2").price, 2222)
                raise Rollback
        except Rollback:
            pass
        read("outer after savepoint rollback", lambda: Book.get(title="b2").price, 22)
        with transaction.atomic(using=alias):
            Book.filter(title="b4").update(price=44)
        read("outer after savepoint release", lambda: Book.get(title="b4").price, 44)
    read("after commit", lambda: list(Book.filter(title__in=["b2", "b4"]).order_by("id")
                                      .values_list("price", flat=True)), [22, 44])

    # on_commit runs after the commit: what it reads, on the writer's connection and on the
    # observer's, shows the transaction's writes.
    seen: list[Any] = []
    read("before on_commit", lambda: Book.get(title="b6").price, 60)
    observer_books = m.Book.objects.using(alias + "_b")
    with transaction.atomic(using=alias):
        Book.filter(title="b6").update(price=66)
        transaction.on_commit(lambda: seen.extend([observer_books.get(title="b6").price,
                                                   Book.get(title="b6").price]), using=alias)
    results.append(("on_commit", seen))
    if seen != [66, 66]:
        stale.append(f"on_commit read {seen!r}, expected [66, 66]")

    # Manual transaction control: set_autocommit(False), a write, rollback().
    connection = writer
    read("before manual", lambda: Book.get(title="b3").price, 31)
    connection.set_autocommit(False)
    try:
        Book.filter(title="b3").update(price=333)
        read("manual inside", lambda: Book.get(title="b3").price, 333)
        connection.rollback()
        read("manual after rollback", lambda: Book.get(title="b3").price, 31)
        Book.filter(title="b3").update(price=33)
        connection.commit()
    finally:
        connection.set_autocommit(True)
    read("manual after commit", lambda: Book.get(title="b3").price, 33)

    # Deletes (the m2m rows cascade).
    Book.filter(title="b5").delete()
    read("after delete", lambda: (Book.count(), titles(Book.filter(tags__name="blue"))), (5, ["b3", "b4", "b6"]))
    red.books.clear()
    read("after m2m clear", lambda: titles(Book.filter(tags__name="red")), [])
    return results, stale


@pytest.mark.parametrize("tables", ["postgres", "sqlite", "mysql"], indirect=True)
def test_orm_slice_equals_plain_backend_with_hits(tables: tuple[str, str]) -> None:
    plain, cached = tables
    cache = cache_of(cached)
    before = cache.stats().to_dict()["hits"]
    expected, plain_stale = script(plain)
    got, stale = script(cached)
    assert plain_stale == [], plain_stale  # the script's own expectations hold on Django's backend
    assert stale == [], stale
    assert [(label, value) for label, value in got] == expected
    after = cache.stats().to_dict()["hits"]
    assert after["l1"] + after["l2"] > before["l1"] + before["l2"], (before, after)


@pytest.mark.parametrize("tables", ["postgres"], indirect=True)
def test_raw_cursor_statuses_and_wrapped_connection(tables: tuple[str, str]) -> None:
    _, alias = tables
    connection = connections[alias]
    table = MODELS[alias].Book._meta.db_table
    connection.ensure_connection()
    assert type(connection.connection) is CachedConnection
    assert connection.connection.wrapped is connection.raw_connection
    statuses = []
    for _ in range(2):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {table} WHERE price > %s", [0])
            statuses.append((cursor.fetchone(), cursor.cursor.cache_status))
    assert statuses == [((0,), "miss"), ((0,), "hit:L1")]
    # Inside atomic() after a write: bypassed (the transaction is dirty), and the write is seen.
    m = MODELS[alias]
    with transaction.atomic(using=alias):
        m.Book.objects.using(alias).create(title="x", price=5, author=m.Author.objects.using(alias).create(name="a"))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {table} WHERE price > %s", [0])
            assert (cursor.fetchone(), cursor.cursor.cache_status) == ((1,), "bypass:tx_dirty")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE price > %s", [0])
        assert (cursor.fetchone(), cursor.cursor.cache_status) == ((1,), "miss")


@pytest.mark.parametrize("tables", ["postgres", "sqlite", "mysql"], indirect=True)
def test_debug_cursor_logs_the_queries(tables: tuple[str, str]) -> None:
    """DEBUG=True (and django-debug-toolbar) log every query with its parameters through the cursor."""
    _, alias = tables
    connection = connections[alias]
    m = MODELS[alias]
    m.Book.objects.using(alias).create(title="logged", price=7, author=m.Author.objects.using(alias).create(name="l"))
    connection.force_debug_cursor = True
    try:
        connection.queries_log.clear()
        for _ in range(2):
            assert list(m.Book.objects.using(alias).filter(price=7).values_list("title", flat=True)) == ["logged"]
        logged = [q["sql"] for q in connection.queries]
    finally:
        connection.force_debug_cursor = False
    assert len(logged) == 2 and all(m.Book._meta.db_table in sql and "7" in sql for sql in logged), logged


@pytest.mark.parametrize("tables", ["postgres"], indirect=True)
def test_iterator_reads_the_database(tables: tuple[str, str]) -> None:
    """QuerySet.iterator() uses a named (server-side) cursor Django builds on the driver's connection."""
    _, alias = tables
    m = MODELS[alias]
    author = m.Author.objects.using(alias).create(name="it")
    m.Book.objects.using(alias).bulk_create([m.Book(title=f"i{i}", price=i, author=author) for i in range(5)])
    books = m.Book.objects.using(alias).order_by("id")
    for _ in range(2):
        with transaction.atomic(using=alias):
            assert [b.price for b in books.iterator(chunk_size=2)] == [0, 1, 2, 3, 4]
    assert [b.price for b in books.iterator(chunk_size=2)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("tables", ["postgres"], indirect=True)
def test_health_check_reaches_the_server(tables: tuple[str, str], pg: Any) -> None:
    """is_usable() (CONN_HEALTH_CHECKS) runs SELECT 1, a read the cache answers: it must not be."""
    _, alias = tables
    connection = connections[alias]
    connection.ensure_connection()
    assert connection.is_usable() and connection.is_usable()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    admin = pg.connect()
    try:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        admin.close()
    assert not connection.is_usable()
    connection.close()


def test_one_cache_per_configuration() -> None:
    assert cache_of("qc_pg") is cache_of("qc_sqlite")  # both read settings.QUERYCACHE
    assert cache_of("qc_other") is not cache_of("qc_pg")  # its own "QUERYCACHE" key
    assert cache_of("qc_other").config.l1.max_entries == 50
    assert cache_of("qc_pg").config.ttl.default_s == 600
    with pytest.raises(Exception, match="does not use a querycache backend"):
        cache_of("plain_pg")


def test_djangos_pool_is_refused(tmp_path: Path) -> None:
    from django.core.exceptions import ImproperlyConfigured

    _probe("postgres", tmp_path)
    with pytest.raises(ImproperlyConfigured, match=r"\['OPTIONS'\]\['pool'\]: Django's connection pool is not "):
        connections["qc_pool"].ensure_connection()


def test_bad_configuration_is_a_clear_error() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from querycache.django.backend import cache_for

    with pytest.raises(ImproperlyConfigured, match=r"settings.QUERYCACHE: .*l1.*max_entry"):
        cache_for({"l1": {"max_entry": 5}})


@pytest.mark.parametrize("tables", ["postgres"], indirect=True)
def test_management_command_stats(tables: tuple[str, str]) -> None:
    _, alias = tables
    m = MODELS[alias]
    for _ in range(3):
        list(m.Book.objects.using(alias).filter(price__gt=1))
    out = io.StringIO()
    call_command("querycache", "stats", "--json", "--database", alias, stdout=out)
    data = json.loads(out.getvalue())
    assert data["backend"] == "memory"
    assert data["counters"]["hits"]["l1"] >= 2, data
    assert any(m.Book._meta.db_table in row["normalized"] for row in data["fingerprints"]), data["fingerprints"]
    text = io.StringIO()
    call_command("querycache", "stats", "--database", alias, stdout=text)
    assert "querycache: memory store, namespace 'querycache'" in text.getvalue()
    assert "hit ratio" in text.getvalue()
    with pytest.raises(CommandError, match="does not use a querycache backend"):
        call_command("querycache", "stats", "--database", "plain_pg", stdout=io.StringIO())


def test_management_command_prints_what_the_cli_prints(tmp_path: Path, pg: Any) -> None:
    """With a Redis store, ``manage.py querycache stats`` and ``python -m querycache stats`` read the same
    published counters."""
    import subprocess
    import sys

    import yaml

    shared_redis_up()
    connection = connections["qc_redis"]
    try:
        for _ in range(3):
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_class WHERE relname = %s", [f"{PREFIX}_none"])
                cursor.fetchall()
        cache = cache_of("qc_redis")
        assert cache.backend.name == "redis"
        assert cache.publish_stats()
        out = io.StringIO()
        call_command("querycache", "stats", "--json", "--database", "qc_redis", stdout=out)
        managed = json.loads(out.getvalue())
        config = tmp_path / "qc.yaml"
        config.write_text(yaml.safe_dump(REDIS_QUERYCACHE))
        cli = subprocess.run([sys.executable, "-m", "querycache", "--config", str(config), "stats", "--json"],
                             capture_output=True, text=True)
        assert cli.returncode == 0, cli.stderr
        printed = json.loads(cli.stdout)
    finally:
        connection.close()
    assert managed["backend"] == printed["backend"] == "redis"
    assert managed["processes"] == printed["processes"] == 1
    assert managed["counters"]["hits"] == printed["counters"]["hits"]
    assert managed["counters"]["hits"]["l1"] == 2, managed["counters"]
    assert managed["fingerprints"] == printed["fingerprints"]
