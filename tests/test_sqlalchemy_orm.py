"""SQLAlchemy 2 Core and ORM over wrapped connections: one scripted sequence, run on raw and on wrapped.

The script (``scenario``) covers a one-to-many (author → books) and a many-to-many (books ↔ tags)
relationship: inserts, ORM updates, a bulk ORM ``update()`` and a Core ``update()``/``insert()``,
deletes, lazy, ``selectinload`` and ``joinedload`` loading, a query repeated to hit the cache, a
transaction rolled back (with another engine reading while it is open), and a second engine reading
after every commit. It runs twice per database: through raw connections and through
``cache.wrap(...)`` ones, on separate tables; every result must be identical, the cached run must have
had cache hits, and every read after a commit must show that commit (checked against literal
expectations, not only against the raw run).

psycopg2 with ``creator=`` is a documented limitation (tests/test_sqlalchemy.py); with
``querycache.sqlalchemy.install`` it works (tests/test_sqlalchemy_install.py runs this scenario there).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, joinedload, mapped_column, relationship, selectinload

import querycache
from tests.backends.test_redis import REDIS_URL, _redis_up
from tests.conftest import Database

URLS = {"sqlite": "sqlite://", "postgres": "postgresql+psycopg://", "mysql": "mysql+pymysql://"}
FIXTURES = {"sqlite": "sqlite_db", "postgres": "pg", "mysql": "mysql"}


def make_models(db: Database, prefix: str) -> SimpleNamespace:
    """Declarative classes on tables named ``<prefix>_...``, their own registry per run."""
    authors, books, tags, book_tags = (f"{prefix}_{name}" for name in ("authors", "books", "tags", "book_tags"))
    db.tables.extend([authors, tags, books, book_tags])  # conftest drops them in reverse order

    class Base(DeclarativeBase):
        pass

    links = sa.Table(book_tags, Base.metadata,
                     sa.Column("book_id", sa.ForeignKey(f"{books}.id", ondelete="CASCADE"), primary_key=True),
                     sa.Column("tag_id", sa.ForeignKey(f"{tags}.id", ondelete="CASCADE"), primary_key=True))

    class Author(Base):
        __tablename__ = authors
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(50))
        books = relationship("Book", back_populates="author", order_by="Book.id", cascade="all, delete-orphan")

    class Book(Base):
        __tablename__ = books
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(sa.String(80))
        price: Mapped[int] = mapped_column()
        author_id: Mapped[int] = mapped_column(sa.ForeignKey(f"{authors}.id"))
        author = relationship("Author", back_populates="books")
        tags = relationship("Tag", secondary=links, back_populates="books", order_by="Tag.id")

    class Tag(Base):
        __tablename__ = tags
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(30))
        books = relationship("Book", secondary=links, back_populates="tags", order_by="Book.id")

    return SimpleNamespace(Base=Base, Author=Author, Book=Book, Tag=Tag, links=links)


class Script:
    """Every result in order, by label; reads after a commit also checked against what they must show."""

    def __init__(self) -> None:
        self.results: list[tuple[str, Any]] = []
        self.stale: list[str] = []

    def record(self, label: str, value: Any) -> Any:
        self.results.append((label, value))
        return value

    def expect(self, label: str, value: Any, expected: Any) -> None:
        self.record(label, value)
        if value != expected:
            self.stale.append(f"{label}: read {value!r}, committed state is {expected!r}")


def scenario(m: SimpleNamespace, engine: sa.Engine, engine2: sa.Engine, script: Script) -> None:
    Author, Book, Tag, links = m.Author, m.Book, m.Tag, m.links

    def prices(eng: sa.Engine) -> list[tuple[Any, ...]]:
        """The repeated query; twice per transaction: on REPEATABLE READ (MariaDB) the first read of a
        transaction runs on the database to pin its snapshot, the second may hit."""
        with Session(eng) as session:
            first = [tuple(r) for r in session.execute(sa.select(Book.id, Book.title, Book.price).order_by(Book.id))]
            second = [tuple(r) for r in session.execute(sa.select(Book.id, Book.title, Book.price).order_by(Book.id))]
        assert first == second
        return second

    def graph(eng: sa.Engine) -> list[Any]:
        with Session(eng) as session:
            query = sa.select(Author).options(selectinload(Author.books).selectinload(Book.tags)).order_by(Author.id)
            return [(a.name, [(b.title, [t.name for t in b.tags]) for b in a.books]) for a in session.scalars(query)]

    def tag_counts(eng: sa.Engine) -> list[tuple[Any, ...]]:
        with eng.connect() as conn:
            query = (sa.select(Tag.name, sa.func.count(links.c.book_id)).select_from(Tag)
                     .outerjoin(links, links.c.tag_id == Tag.id).group_by(Tag.id, Tag.name).order_by(Tag.id))
            return [tuple(r) for r in conn.execute(query)]

    m.Base.metadata.create_all(engine)

    # Insert a small graph through the ORM (association rows included).
    with Session(engine) as session:
        scifi, classic, short = Tag(id=1, name="scifi"), Tag(id=2, name="classic"), Tag(id=3, name="short")
        session.add_all([
            Author(id=1, name="Le Guin", books=[
                Book(id=1, title="The Dispossessed", price=10, tags=[scifi, classic]),
                Book(id=2, title="The Word for World", price=8, tags=[scifi, short])]),
            Author(id=2, name="Austen", books=[Book(id=3, title="Emma", price=7, tags=[classic])]),
        ])
        session.commit()
    state = [(1, "The Dispossessed", 10), (2, "The Word for World", 8), (3, "Emma", 7)]
    # The repeated query, through both engines: fills, then hits.
    for i in range(3):
        script.expect(f"repeat {i}", prices(engine), state)
    script.expect("engine2 after insert", prices(engine2), state)
    script.expect("tag counts after insert", tag_counts(engine), [("scifi", 2), ("classic", 2), ("short", 1)])

    # Relationship loading, three ways.
    with Session(engine) as session:
        authors = session.scalars(sa.select(Author).order_by(Author.id)).all()
        script.record("lazy", [(a.name, [(b.title, [t.name for t in b.tags]) for b in a.books]) for a in authors])
        script.record("lazy many-to-one", [b.author.name for b in session.scalars(sa.select(Book).order_by(Book.id))])
    script.record("selectinload", graph(engine))
    with Session(engine) as session:
        query = sa.select(Book).options(joinedload(Book.author), joinedload(Book.tags)).order_by(Book.id)
        script.record("joinedload", [(b.title, b.author.name, [t.name for t in b.tags])
                                     for b in session.scalars(query).unique()])
    script.record("get", _get_title(engine, Book, 3))

    # An ORM update: the cached entries of the repeated query must not survive the commit.
    with Session(engine) as session:
        book = session.get(Book, 1)
        assert book is not None
        book.price = 12
        session.commit()
    state = [(1, "The Dispossessed", 12), (2, "The Word for World", 8), (3, "Emma", 7)]
    script.expect("after ORM update", prices(engine), state)
    script.expect("engine2 after ORM update", prices(engine2), state)

    # Bulk ORM update() in a session, then a Core update() on a connection.
    with Session(engine) as session:
        result = session.execute(sa.update(Book).where(Book.author_id == 1).values(price=Book.price + 5))
        script.record("bulk update rowcount", result.rowcount)  # type: ignore[attr-defined]
        session.commit()
    state = [(1, "The Dispossessed", 17), (2, "The Word for World", 13), (3, "Emma", 7)]
    script.expect("after bulk ORM update", prices(engine), state)
    script.expect("engine2 after bulk ORM update", prices(engine2), state)
    with engine.begin() as conn:
        result = conn.execute(sa.update(Book.__table__).where(Book.__table__.c.price < 10).values(price=9))
        script.record("core update rowcount", result.rowcount)
    state = [(1, "The Dispossessed", 17), (2, "The Word for World", 13), (3, "Emma", 9)]
    script.expect("after Core update", prices(engine), state)
    script.expect("engine2 after Core update", prices(engine2), state)

    # Many-to-many changes through the ORM, read by the other engine with selectinload.
    with Session(engine) as session:
        emma, short_tag, classic_tag = session.get(Book, 3), session.get(Tag, 3), session.get(Tag, 2)
        assert emma is not None and short_tag is not None and classic_tag is not None
        emma.tags.remove(classic_tag)
        emma.tags.append(short_tag)
        session.commit()
    expected_graph = [("Le Guin", [("The Dispossessed", ["scifi", "classic"]),
                                   ("The Word for World", ["scifi", "short"])]),
                      ("Austen", [("Emma", ["short"])])]
    script.expect("engine2 graph after m2m change", graph(engine2), expected_graph)
    script.expect("tag counts after m2m change", tag_counts(engine), [("scifi", 2), ("classic", 1), ("short", 2)])

    # A transaction rolled back: its own reads see its changes, the other engine's do not, and after
    # the rollback nobody does.
    with Session(engine) as session:
        emma = session.get(Book, 3)
        assert emma is not None
        emma.title = "Emma (draft)"
        session.add(Book(id=4, title="Persuasion", price=11, author_id=2))
        session.flush()
        inside = [tuple(r) for r in session.execute(sa.select(Book.id, Book.title, Book.price).order_by(Book.id))]
        script.expect("inside the open transaction", inside,
                      [*state[:2], (3, "Emma (draft)", 9), (4, "Persuasion", 11)])
        script.expect("engine2 while the transaction is open", prices(engine2), state)
        session.rollback()
    script.expect("after rollback", prices(engine), state)
    script.expect("engine2 after rollback", prices(engine2), state)

    # Deletes: an ORM delete (its association rows go with it), then a Core insert of several rows.
    with Session(engine) as session:
        session.delete(session.get(Book, 2))
        session.commit()
    state = [(1, "The Dispossessed", 17), (3, "Emma", 9)]
    script.expect("after ORM delete", prices(engine), state)
    script.expect("engine2 after ORM delete", prices(engine2), state)
    script.expect("tag counts after delete", tag_counts(engine2), [("scifi", 1), ("classic", 1), ("short", 1)])
    with engine.begin() as conn:
        conn.execute(sa.insert(Tag.__table__), [{"id": 4, "name": "poetry"}, {"id": 5, "name": "essay"}])
        conn.execute(sa.insert(links), [{"book_id": 1, "tag_id": 4}])
    script.expect("engine2 tag counts after Core insert", tag_counts(engine2),
                  [("scifi", 1), ("classic", 1), ("short", 1), ("poetry", 1), ("essay", 0)])
    with Session(engine) as session:
        session.execute(sa.delete(Tag).where(Tag.name == "essay"))
        session.commit()
    script.expect("tag counts after bulk delete", tag_counts(engine),
                  [("scifi", 1), ("classic", 1), ("short", 1), ("poetry", 1)])
    script.record("final graph", graph(engine2))
    m.Base.metadata.drop_all(engine)


def _get_title(engine: sa.Engine, book: type, ident: int) -> str:
    with Session(engine) as session:
        return session.get_one(book, ident).title  # type: ignore[no-any-return]


def _run(db: Database, kind: str, prefix: str, connect: Callable[[], Any], connect2: Callable[[], Any]) -> Script:
    return run_on_engines(db, prefix, sa.create_engine(URLS[kind], creator=connect),
                          sa.create_engine(URLS[kind], creator=connect2))


def run_on_engines(db: Database, prefix: str, engine: sa.Engine, engine2: sa.Engine) -> Script:
    """The scenario on two engines (disposed after), its script."""
    script = Script()
    try:
        scenario(make_models(db, prefix), engine, engine2, script)
    finally:
        engine.dispose()
        engine2.dispose()
    return script


def _caches(store: str) -> tuple[querycache.QueryCache, querycache.QueryCache]:
    if store == "memory":
        cache = querycache.QueryCache()
        return cache, cache
    _redis_up(REDIS_URL)
    config = {"l2": {"backend": "redis", "url": REDIS_URL, "namespace": f"qc-orm-{uuid.uuid4().hex[:8]}"}}
    return querycache.QueryCache.from_dict(config), querycache.QueryCache.from_dict(config)


# memory: both engines share one cache. redis: the second engine goes through a second QueryCache
# (as another process would) that shares only the Redis L2 and the table versions with the first.
@pytest.mark.parametrize(("kind", "store"), [("sqlite", "memory"), ("postgres", "memory"), ("mysql", "memory"),
                                             ("postgres", "redis")])
def test_orm_scenario_wrapped_equals_raw(kind: str, store: str, request: pytest.FixtureRequest,
                                         record_property: Callable[[str, object], None]) -> None:
    db: Database = request.getfixturevalue(FIXTURES[kind])
    raw = _run(db, kind, f"{db.prefix}r", lambda: db.connect(autocommit=False), lambda: db.connect(autocommit=False))
    cache, cache2 = _caches(store)
    try:
        wrapped = _run(db, kind, f"{db.prefix}w", lambda: cache.wrap(db.connect(autocommit=False)),
                       lambda: cache2.wrap(db.connect(autocommit=False)))
        stats = [c.stats().to_dict() for c in {id(cache): cache, id(cache2): cache2}.values()]
    finally:
        cache.close()
        if cache2 is not cache:
            cache2.close()
    hits = {tier: sum(s["hits"][tier] for s in stats) for tier in ("l1", "l2")}
    report = (f"sqlalchemy {kind}/{store}: {len(raw.results)} results compared, hits {hits}, "
              f"misses {sum(s['misses'] for s in stats)}, bypasses {sum(sum(s['bypasses'].values()) for s in stats)}")
    print(report)
    record_property("sqlalchemy", report)
    assert raw.stale == [], raw.stale  # the script's own expectations hold on the raw database
    assert wrapped.stale == [], wrapped.stale  # no read after a commit returned old data
    assert len(raw.results) > 20
    assert [label for label, _ in wrapped.results] == [label for label, _ in raw.results]
    differing = [(label, r, w) for (label, r), (_, w) in zip(raw.results, wrapped.results, strict=True) if r != w]
    assert differing == [], differing
    assert hits["l1"] + hits["l2"] > 0, report
    assert all(s["fail_open"] == 0 for s in stats), stats
    if store == "redis":
        assert stats[1]["hits"]["l2"] > 0, f"the second cache never hit the shared L2: {stats[1]['hits']}"
