"""Profile the L1 hit path of ``CachedCursor.execute`` (sqlite, 10 rows).

    /work/main/.venv/bin/python bench/profile_l1.py

1. cProfile over many hits (tottime per function).
2. The hit path re-enacted step by step with timeit, so each step's cost is visible without
   profiler overhead (the steps mirror querycache/cursor.py ``CachedCursor.execute``,
   ``read.l1_fresh``, ``_serve``, ``_result`` and ``fetchall``).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from conftest import SQLITE_POINT, make_sqlite  # noqa: E402

import querycache  # noqa: E402
from querycache.keys import l1_params  # noqa: E402
from querycache.read import l1_fresh  # noqa: E402

N = 200_000


def main() -> None:
    cache = querycache.QueryCache()
    conn = cache.wrap(make_sqlite())
    cur = conn.cursor()
    params = (3,)

    def hit() -> list:
        cur.execute(SQLITE_POINT, params)
        return cur.fetchall()

    hit()
    hit()
    assert cur.cache_status == "hit:L1", cur.cache_status

    total = min(timeit.repeat(hit, number=N, repeat=5)) / N * 1e6
    exec_only = min(timeit.repeat(lambda: cur.execute(SQLITE_POINT, params), number=N, repeat=5)) / N * 1e6
    print(f"hit execute+fetchall: {total:.3f} µs   execute only: {exec_only:.3f} µs")

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(N):
        hit()
    prof.disable()
    print("\ncProfile, by tottime (per-call overhead of the profiler inflates small functions):")
    pstats.Stats(prof).sort_stats("tottime").print_stats(14)

    # -- the same steps, one at a time ------------------------------------------------------
    session = cur._session
    adapter, raw_conn, raw_cur, l1 = session.adapter, session.raw, cur._raw, session.l1
    tx = session.tx
    key = (session.scope_id, cache._tenant.get(), adapter.shape_token(raw_cur), SQLITE_POINT, l1_params(params))
    entry = l1[key]
    backend = cache.backend
    versions = cache.mirror_versions
    steps = {
        "attribute loads (session, adapter, raw, tx, l1) via CachedCursor.__getattribute__":
            lambda: (cur._session, session.adapter, session.raw, session.tx, session.l1),
        "adapter.in_transaction(raw_conn)  [sqlite: bool(conn.in_transaction)]":
            lambda: adapter.in_transaction(raw_conn),
        "tx-state test (tx.open/tracked/dirty, session.temp_scoped)":
            lambda: (l1 is not None and (not tx.open) and not session.temp_scoped),
        "l1_params(params)": lambda: l1_params(params),
        "cache._tenant.get()  (ContextVar)": lambda: cache._tenant.get(),
        "adapter.shape_token(raw_cur)  [row_factory + connection.text_factory]":
            lambda: adapter.shape_token(raw_cur),
        "key tuple build + hash (5-tuple incl. SQL text)":
            lambda: hash((session.scope_id, None, key[2], SQLITE_POINT, key[4])),
        "l1.get(key)  (cachetools LRUCache.get -> __getitem__ -> __update)": lambda: l1.get(key),
        "l1_fresh: backend.epoch property + time.monotonic()":
            lambda: (entry.epoch != backend.epoch or entry.expires_at <= time.monotonic()),
        "l1_fresh: adapter.reads_open_transaction(raw)  [getattr autocommit]":
            lambda: adapter.reads_open_transaction(raw_conn),
        "l1_fresh: version loop over entry.version_keys":
            lambda: [versions.get(k) for k in entry.version_keys],
        "l1_fresh (whole)": lambda: l1_fresh(session, entry, False),
        "_serve(result, HIT_L1)  (8 attribute sets through __setattr__ + frozenset test)":
            lambda: cur._serve(entry.result, "hit:L1"),
        "next(stats.hits['l1'])  (dict lookup + itertools.count)": lambda: next(cache._stats.hits["l1"]),
        "_result()": lambda: cur._result(),
        "fetchall() (copy 10 rows + adapter.rows_container check)": lambda: cur.fetchall(),
    }
    print(f"\nstep-by-step (min of 5 x {N:,} calls, µs per call):")
    timed = []
    for name, fn in steps.items():
        fn()
        timed.append((min(timeit.repeat(fn, number=N, repeat=5)) / N * 1e6, name))
    for us, name in timed:
        print(f"  {us:7.3f}  {name}")
    print("\nthe five most expensive steps (excluding the '(whole)' aggregate):")
    for us, name in sorted((t for t in timed if "(whole)" not in t[1]), reverse=True)[:5]:
        print(f"  {us:7.3f}  {name}")


if __name__ == "__main__":
    main()
