"""L3 evaluated on the semantic corpora (``tests/corpus/semantic``) on PostgreSQL, as both
``tests/test_semantic_eval.py`` and ``bench/semantic_corpus.py`` run it.

For each pair (a, b), with every tier flushed before the pair: run ``a`` through a wrapped
connection with L3 on for every read (a miss: filled into L2 and indexed in L3), wait for the
index, run ``b``. ``b``'s status says who answered: ``hit:L1``/``hit:L2`` (plain normalization
already equated the texts), ``hit:L3``, or ``miss``. Every answer of ``b`` is compared with ``b``
run on an uncached connection: same column names in the same order, same rows (ordered when ``b``
has ORDER BY). On the near-miss corpus any hit is a false hit. Needs psycopg 3 and the L3 extra.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import NotRequired, TypedDict

import querycache
from querycache.config import Config
from querycache.drivers.base import DBAPICursor
from querycache.semantic.canonical import Ineligible, canonicalize
from querycache.semantic.tier import wait_until_indexed
from querycache.testing.corpus import CorpusPair, has_top_level_order_by

Answer = tuple[list[str], list[tuple[object, ...]]]


class WrongAnswer(TypedDict):
    id: str
    status: str


class Evaluation(TypedDict):
    """What ``evaluate`` counted; ``corpus`` is the caller's to set (the benchmark's report)."""

    model: str
    pairs: int
    statuses: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    wrong_answers: list[WrongAnswer]
    ineligible_a: dict[str, int]
    seconds: float
    corpus: NotRequired[str]


def _fetch(cur: DBAPICursor, sql: str) -> Answer:
    cur.execute(sql)
    description = cur.description
    assert description is not None, f"no result set: {sql}"
    return [str(d[0]) for d in description], [tuple(r) for r in cur.fetchall()]


def exact_same(sql: str, got: Answer, expected: Answer) -> bool:
    """What a client sees: the same column names in the same order and the same rows (in the same
    order when the statement orders them)."""
    if got[0] != expected[0]:
        return False
    if has_top_level_order_by(sql):
        return got[1] == expected[1]
    return sorted(got[1], key=repr) == sorted(expected[1], key=repr)


def evaluate(model: str, pairs: list[CorpusPair], dsn: str) -> Evaluation:
    """Run every pair as the module docstring says, on the database at ``dsn`` (the corpus's
    schema loaded); returns counts per status and kind."""
    import psycopg

    cache = querycache.QueryCache(Config.from_dict({"l3": {
        "enabled": True, "model": model, "all_reads": True, "budget_ms": 30000}}))
    assert cache.l3 is not None and cache.l3.worker.wait_ready(120)
    raw = psycopg.connect(dsn, autocommit=True)
    conn = cache.wrap(psycopg.connect(dsn, autocommit=True))
    statuses: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    wrong: list[WrongAnswer] = []
    ineligible: Counter[str] = Counter()
    started = time.perf_counter()
    try:
        for pair in pairs:
            cache.l3.worker.drain(60)  # the last pair's add must not land after the flush
            cache.flush()
            cur = conn.cursor()
            cur.execute(pair["a"])
            cur.fetchall()
            try:
                canonicalize(pair["a"], "postgres", "format", None)
            except Ineligible as exc:
                ineligible[exc.reason] += 1
            else:
                if str(cur.cache_status) == "miss":  # filled: wait for its (asynchronous) index add
                    wait_until_indexed(cache.l3, 1, timeout=60)
            got = _fetch(cur, pair["b"])
            status = str(cur.cache_status)
            expected = _fetch(raw.cursor(), pair["b"])
            statuses[status] += 1
            by_kind.setdefault(pair["kind"], Counter())[status] += 1
            if not exact_same(pair["b"], got, expected):
                wrong.append({"id": pair["id"], "status": status})
            cur.close()
    finally:
        raw.close()
        conn.close()
        cache.close()
    return {"model": model, "pairs": len(pairs), "statuses": dict(statuses),
            "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())}, "wrong_answers": wrong,
            "ineligible_a": dict(ineligible), "seconds": round(time.perf_counter() - started, 1)}


def hit_rates(result: Evaluation) -> dict[str, float]:
    """Shares of the pairs answered by L1/L2, by L3, by L3 among those L2 did not answer, by any."""
    s = result["statuses"]
    total = result["pairs"]
    l2 = s.get("hit:L2", 0) + s.get("hit:L1", 0)
    l3 = s.get("hit:L3", 0)
    beyond = total - l2
    return {"l2_share": round(l2 / total, 3), "l3_share": round(l3 / total, 3),
            "l3_beyond_l2": round(l3 / beyond, 3) if beyond else 0.0, "any_hit": round((l2 + l3) / total, 3)}
