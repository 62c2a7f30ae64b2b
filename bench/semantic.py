"""L3 benchmark: index lookup cost, embedding throughput, end-to-end hit latency, memory.

    .venv/bin/python bench/semantic.py            # full (about 10 minutes)
    .venv/bin/python bench/semantic.py --quick    # 1k and 10k entries, fewer samples

Sections, every comparison measured side by side in this run (the machine is noisy; read ratios):

* ``lookup``: one scope's FAISS index at 1k, 10k, 100k entries, exact (``IndexFlatIP``) vs HNSW
  (M = 32, efSearch = 64): p50/p99 of a top-8 search over the whole scope, and of the search L3
  does (restricted to the statement's guard bucket), plus the index's own size
  (``faiss.serialize_index``) and the process's RSS growth per 100k entries (vectors, canonical
  forms and bookkeeping). Vectors are n-gram embeddings of canonical forms of generated shop
  queries (MiniLM would take an hour to embed 100k texts here; both are 384-dimensional unit
  vectors and FAISS cost does not depend on where they came from).
* ``embedding``: MiniLM texts/s for 8 concurrent callers, each embedding its own texts one call at
  a time (``single``) vs the same callers through the micro-batching worker (``batched``); and the
  n-gram embedder single-threaded. Rounds alternate.
* ``end_to_end``: PostgreSQL, an aggregate over a 200k-row table: the uncached query vs an L3 hit
  (a never-seen rewrite each time: new aliases and predicate order, so canonicalization, the
  embedding and the L2 read-through are all in it) vs an L2 hit, for MiniLM and n-gram. Interleaved.

Writes ``bench/results/semantic.json`` and ``.md`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402

import querycache  # noqa: E402
from querycache.config import Config, L3Config  # noqa: E402
from querycache.semantic.canonical import canonicalize  # noqa: E402
from querycache.semantic.embedders import NgramEmbedder, load_embedder  # noqa: E402
from querycache.semantic.tier import SemanticTier, wait_until_indexed  # noqa: E402
from querycache.semantic.worker import EmbeddingWorker  # noqa: E402
from querycache.stats import Counters  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PG_DSN = os.environ.get("QUERYCACHE_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
STATUSES = ["paid", "open", "shipped", "refunded", "cancelled"]
COUNTRIES = ["FR", "DE", "ES", "IT", "NL", "BE", "PL", "SE", "PT", "AT"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def shop_query(i: int) -> str:
    rng = random.Random(i)
    kind = i % 4
    if kind == 0:
        return f"SELECT id, total, status FROM orders WHERE id = {rng.randrange(10**6)}"
    if kind == 1:
        return (f"SELECT c.country, SUM(o.total) AS revenue FROM orders o JOIN customers c ON o.cid = c.id "
                f"WHERE o.status = '{rng.choice(STATUSES)}' AND o.total > {rng.randrange(1000)} "
                f"GROUP BY c.country ORDER BY revenue DESC LIMIT {rng.randrange(1, 50)}")
    if kind == 2:
        return (f"SELECT id, name FROM customers WHERE country IN ('{rng.choice(COUNTRIES)}', "
                f"'{rng.choice(COUNTRIES)}') AND id BETWEEN {rng.randrange(10**5)} AND {rng.randrange(10**5, 10**6)}")
    return (f"SELECT p.category, COUNT(*) AS n FROM products p WHERE p.price < {rng.randrange(5000)} "
            f"AND p.stock > {rng.randrange(100)} GROUP BY p.category")


# -- lookup ------------------------------------------------------------------------------
def bench_lookup(sizes: list[int], samples: int) -> list[dict[str, Any]]:
    embedder = NgramEmbedder()
    largest = max(sizes)
    print(f"[lookup] canonicalizing and embedding {largest} generated statements ...", flush=True)
    forms = [canonicalize(shop_query(i), "postgres", "format", None) for i in range(largest)]
    vectors = np.vstack([embedder.encode([f.form for f in forms[i:i + 1000]]) for i in range(0, largest, 1000)])
    out = []
    for size in sizes:
        for kind in ("flat", "hnsw"):
            gc.collect()
            before = rss_bytes()
            config = L3Config(enabled=True, model="ngram", max_entries=size + 1,
                              hnsw_above=size + 1 if kind == "flat" else 1)
            tier = SemanticTier(config, Counters())
            started = time.perf_counter()
            for i in range(size):
                bucket = tier.bucket("scope", (), forms[i])
                tier.index.add("scope", bucket, forms[i], f"qc:e:0:{i}", forms[i].form, vectors[i])
            build_s = time.perf_counter() - started
            grown = rss_bytes() - before
            tier.worker.wait_ready(10)
            serialized = tier.index.serialized_size("scope")
            rng = random.Random(size)
            whole, lookups = [], []
            for _ in range(samples):
                i = rng.randrange(size)
                t0 = time.perf_counter()
                tier.index.search("scope", None, vectors[i], 8)
                t1 = time.perf_counter()
                proposal = tier.lookup("scope", (), forms[i], 0.97, budget_s=1.0)
                t2 = time.perf_counter()
                whole.append(t1 - t0)
                lookups.append(t2 - t1)
                assert proposal is not None and proposal.entry.canonical.form == forms[i].form
            # Recall of the exact neighbour (flat is exact by construction; HNSW is approximate).
            probes = range(0, size, max(1, size // 200))
            recall = sum(1 for i in probes if tier.index.search("scope", None, vectors[i], 1)[0][0] > 0.9999)
            row = {"entries": size, "index": kind, "build_s": round(build_s, 2),
                   "search_p50_us": round(pct(whole, 50) * 1e6, 1), "search_p99_us": round(pct(whole, 99) * 1e6, 1),
                   "lookup_p50_us": round(pct(lookups, 50) * 1e6, 1),
                   "lookup_p99_us": round(pct(lookups, 99) * 1e6, 1),
                   "self_recall": round(recall / len(probes), 3), "faiss_bytes": serialized,
                   "rss_growth_bytes": grown}
            print(f"[lookup] {row}", flush=True)
            out.append(row)
            tier.close()
            del tier
    return out


# -- embedding ---------------------------------------------------------------------------
def bench_embedding(rounds: int, per_caller: int) -> dict[str, Any]:
    """8 callers embed distinct texts (every text unique in the run: no memo help), three ways,
    rounds interleaved: each caller calls the model itself (``single``; the model serves one call
    at a time), or goes through the worker with no wait to fill a batch (``batched``: batches form
    while the model is busy) or waiting up to 2 ms (``batched_wait2``)."""
    print("[embedding] loading MiniLM ...", flush=True)
    model = load_embedder("minilm")
    callers = 8
    modes = ("single", "batched", "batched_wait2")
    serial = iter(range(10**9))

    def fresh_texts() -> list[str]:
        return [canonicalize(shop_query(next(serial)), "postgres", "format", None).form + f" [{next(serial)}]"
                for _ in range(callers * per_caller)]

    model.encode(fresh_texts()[:8])  # warm up
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes:
            chunk = fresh_texts()
            assert len(set(chunk)) == len(chunk)
            worker = None
            if mode != "single":
                worker = EmbeddingWorker(lambda: model, batch_max=32,
                                         batch_wait_s=0.0 if mode == "batched" else 0.002,
                                         queue_max=256, counters=Counters())
                worker.wait_ready(60)

            def call(mine: list[str], worker: EmbeddingWorker | None = worker) -> None:
                for text in mine:
                    if worker is None:
                        model.encode([text])
                    else:
                        assert worker.embed(text, 60) is not None

            started = time.perf_counter()
            threads = [threading.Thread(target=call, args=(chunk[c * per_caller:(c + 1) * per_caller],))
                       for c in range(callers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rates[mode].append(len(chunk) / (time.perf_counter() - started))
            detail = f" ({worker.batches} batches for {worker.embedded} texts)" if worker else ""
            print(f"[embedding] round {r} {mode}: {rates[mode][-1]:.1f} texts/s{detail}", flush=True)
            if worker is not None:
                worker.close()
    ngram = NgramEmbedder()
    sample = fresh_texts()[:2000]
    started = time.perf_counter()
    for text in sample:
        ngram.encode([text])
    ngram_rate = len(sample) / (time.perf_counter() - started)
    med = {m: statistics.median(v) for m, v in rates.items()}
    return {"callers": callers, "texts_per_caller": per_caller, "rounds": rounds,
            "minilm_single_per_s": round(med["single"], 1), "minilm_batched_per_s": round(med["batched"], 1),
            "minilm_batched_wait2_per_s": round(med["batched_wait2"], 1),
            "batched_over_single": round(med["batched"] / med["single"], 2),
            "batched_wait2_over_single": round(med["batched_wait2"] / med["single"], 2),
            "ngram_single_thread_per_s": round(ngram_rate, 1),
            "per_round": {m: [round(x, 1) for x in v] for m, v in rates.items()}}


# -- end to end --------------------------------------------------------------------------
def bench_end_to_end(samples: int) -> list[dict[str, Any]]:
    import psycopg

    prefix = f"qcsem{os.getpid()}"
    admin = psycopg.connect(PG_DSN, autocommit=True)
    admin.execute(f"CREATE TABLE {prefix}_orders (id INTEGER PRIMARY KEY, cid INTEGER, status TEXT, "
                  f"total NUMERIC(10, 2))")
    admin.execute(f"INSERT INTO {prefix}_orders SELECT g, g % 5000, (ARRAY['paid','open','shipped'])[g % 3 + 1], "
                  f"(g % 997) * 1.5 FROM generate_series(1, 200000) g")
    admin.execute(f"ANALYZE {prefix}_orders")
    t = f"{prefix}_orders"
    template = ("SELECT {a}.status, COUNT(*) AS n, SUM({a}.total) AS revenue FROM {t} {a} "
                "WHERE {p1} AND {p2} GROUP BY {a}.status ORDER BY {a}.status")

    def text(alias: str, flip: bool) -> str:
        p1, p2 = f"{alias}.total > 100", f"{alias}.cid < 4000"
        if flip:
            p1, p2 = f"4000 > {alias}.cid", f"(100 < {alias}.total)"
        return template.format(a=alias, t=t, p1=p1, p2=p2)

    rows = []
    try:
        for model in ("minilm", "ngram"):
            cache = querycache.QueryCache(Config.from_dict({
                "l1": {"enabled": False}, "l3": {"enabled": True, "model": model, "all_reads": True,
                                                  "budget_ms": 5000}}))
            assert cache.l3 is not None and cache.l3.worker.wait_ready(120)
            conn = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
            raw = psycopg.connect(PG_DSN, autocommit=True)
            cur = conn.cursor()
            cur.execute(text("o", False))
            cur.fetchall()
            wait_until_indexed(cache.l3, 1)
            uncached, l3_hits, l2_hits = [], [], []
            for i in range(samples):
                alias = f"a{model}{i}"
                q = text(alias, bool(i % 2))
                t0 = time.perf_counter()
                raw_cur = raw.cursor()
                raw_cur.execute(q)
                expected = raw_cur.fetchall()
                t1 = time.perf_counter()
                cur.execute(q)
                got = cur.fetchall()
                t2 = time.perf_counter()
                assert cur.cache_status == "hit:L3", cur.cache_status
                assert got == expected
                cur.execute(q)
                cur.fetchall()
                t3 = time.perf_counter()
                assert cur.cache_status == "hit:L2"
                uncached.append(t1 - t0)
                l3_hits.append(t2 - t1)
                l2_hits.append(t3 - t2)
            row: dict[str, Any] = {"model": model, "samples": samples}
            for name, values in (("uncached", uncached), ("l3_hit", l3_hits), ("l2_hit", l2_hits)):
                row[f"{name}_p50_ms"] = round(pct(values, 50) * 1e3, 3)
                row[f"{name}_p99_ms"] = round(pct(values, 99) * 1e3, 3)
            row["uncached_over_l3_p50"] = round(pct(uncached, 50) / pct(l3_hits, 50), 2)
            print(f"[end_to_end] {row}", flush=True)
            rows.append(row)
            raw.close()
            conn.close()
            cache.close()
    finally:
        admin.execute(f"DROP TABLE IF EXISTS {prefix}_orders")
        admin.close()
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = ["### L3 lookup vs entries (one scope)", "",
             "| entries | index | FAISS top-8 p50 µs | p99 µs | L3 lookup p50 µs | p99 µs | self-recall "
             "| FAISS bytes | RSS growth |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["lookup"]:
        lines.append(f"| {r['entries']:,} | {r['index']} | {r['search_p50_us']} | {r['search_p99_us']} | "
                     f"{r['lookup_p50_us']} | {r['lookup_p99_us']} | {r['self_recall']} | "
                     f"{r['faiss_bytes'] / 1e6:.1f} MB | {r['rss_growth_bytes'] / 1e6:.1f} MB |")
    e = report.get("embedding")
    if e:
        lines += ["", "### Embedding throughput (MiniLM, 8 concurrent callers, distinct texts)", "",
                  "| single calls | batched (no wait) | ratio | batched (2 ms wait) | ratio | n-gram (1 thread) |",
                  "|---:|---:|---:|---:|---:|---:|",
                  f"| {e['minilm_single_per_s']}/s | {e['minilm_batched_per_s']}/s | {e['batched_over_single']}x | "
                  f"{e['minilm_batched_wait2_per_s']}/s | {e['batched_wait2_over_single']}x | "
                  f"{e['ngram_single_thread_per_s']}/s |"]
    if report.get("end_to_end"):
        lines += ["", "### End to end on PostgreSQL (aggregate over 200k rows; a never-seen rewrite per L3 hit)",
                  "",
                  "| embedder | uncached p50 / p99 ms | L3 hit p50 / p99 ms | L2 hit p50 / p99 ms "
                  "| uncached / L3 (p50) |",
                  "|---|---:|---:|---:|---:|"]
        for r in report["end_to_end"]:
            lines.append(f"| {r['model']} | {r['uncached_p50_ms']} / {r['uncached_p99_ms']} | {r['l3_hit_p50_ms']} / "
                         f"{r['l3_hit_p99_ms']} | {r['l2_hit_p50_ms']} / {r['l2_hit_p99_ms']} | "
                         f"{r['uncached_over_l3_p50']}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("lookup", "embedding", "end_to_end"))
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                          "platform": platform.platform(), "faiss": faiss.__version__}}
    if args.only in (None, "lookup"):
        report["lookup"] = bench_lookup([1000, 10000] if args.quick else [1000, 10000, 100000],
                                        300 if args.quick else 1000)
    else:
        report["lookup"] = []
    if args.only in (None, "embedding"):
        report["embedding"] = bench_embedding(2 if args.quick else 3, 8 if args.quick else 16)
    if args.only in (None, "end_to_end"):
        report["end_to_end"] = bench_end_to_end(20 if args.quick else 60)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "semantic.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (RESULTS / "semantic.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
