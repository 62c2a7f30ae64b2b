"""Profile the L1 hit path of ``CachedCursor.execute`` (sqlite, 10 rows).

    .venv/bin/python bench/profile_l1.py

1. cProfile over many hits (tottime per function).
2. The hit path re-enacted step by step with timeit, so each step's cost is visible without
   profiler overhead (the steps mirror querycache/cursor.py ``CachedCursor.execute``,
   ``read.l1_fresh`` and ``fetchall``; ``execute`` inlines them, reading what cannot change from
   the cursor's ``l1.HitPath``). Serving the entry (the cursor's status and rows, the hit
   counters, the return value) is the cursor's own business: its cost is what ``execute`` takes
   beyond the whole lookup re-enacted here.

Only public names: the session (the connection's state, shared with its cursors) is the one
``cache.context.sessions`` holds.
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
LOOKUP = "lookup before serving (whole)  [transaction test, key, l1.get, l1_fresh]"


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
    (session,) = cache.context.sessions  # the one wrapped connection's
    adapter, raw_conn, raw_cur, l1 = session.adapter, session.raw, cur.wrapped, session.l1
    assert l1 is not None
    tx, tenant, stats = session.tx, cache.context.tenant, cache.context.stats
    key = (session.scope_id, tenant.get(), adapter.shape_token(raw_cur), SQLITE_POINT, l1_params(params))
    entry = l1[key]
    backend = cache.backend
    versions = cache.mirror_versions

    def lookup() -> bool:
        """What execute does before it serves a hit."""
        in_tx = adapter.in_transaction(raw_conn)
        if tx.open or session.temp_scoped:
            return False
        found = l1.get((session.scope_id, tenant.get(), adapter.shape_token(raw_cur), SQLITE_POINT,
                        l1_params(params)))
        return found is not None and l1_fresh(session, found, in_tx)

    steps = {
        "attribute loads (adapter, raw, tx, l1 of the session)":
            lambda: (session.adapter, session.raw, session.tx, session.l1),
        "adapter.in_transaction(raw_conn)  [sqlite: bool(conn.in_transaction)]":
            lambda: adapter.in_transaction(raw_conn),
        "tx-state test (tx.open/tracked/dirty, session.temp_scoped)":
            lambda: (l1 is not None and (not tx.open) and not session.temp_scoped),
        "l1_params(params)": lambda: l1_params(params),
        "tenant.get()  (ContextVar)": lambda: tenant.get(),
        "adapter.shape_token(raw_cur)  [row_factory + connection.text_factory]":
            lambda: adapter.shape_token(raw_cur),
        "key tuple build + hash (5-tuple incl. SQL text)":
            lambda: hash((session.scope_id, None, key[2], SQLITE_POINT, key[4])),
        "l1.get(key)  (OrderedDict get + move_to_end)": lambda: l1.get(key),
        "l1_fresh: backend.epoch property + time.monotonic()":
            lambda: (entry.epoch != backend.epoch or entry.expires_at <= time.monotonic()),
        "l1_fresh: adapter.reads_open_transaction(raw)  [getattr autocommit]":
            lambda: adapter.reads_open_transaction(raw_conn),
        "l1_fresh: version loop over entry.version_keys":
            lambda: [versions.get(k) for k in entry.version_keys],
        "l1_fresh (whole)": lambda: l1_fresh(session, entry, False),
        "next(stats.hits['l1'])  (dict lookup + itertools.count)": lambda: next(stats.hits["l1"]),
        LOOKUP: lookup,
        "fetchall() (copy 10 rows + adapter.rows_container check)": lambda: cur.fetchall(),
    }
    print(f"\nstep-by-step (min of 5 x {N:,} calls, µs per call):")
    timed = []
    for name, fn in steps.items():
        fn()
        timed.append((min(timeit.repeat(fn, number=N, repeat=5)) / N * 1e6, name))
    looked_up = next(us for us, name in timed if name == LOOKUP)
    for us, name in timed:
        print(f"  {us:7.3f}  {name}")
    print(f"  {exec_only - looked_up:7.3f}  serving the hit (status, rows, counters, return value): "
          "execute only minus the lookup before serving")
    print("\nthe five most expensive steps (excluding the '(whole)' aggregate):")
    for us, name in sorted((t for t in timed if "(whole)" not in t[1]), reverse=True)[:5]:
        print(f"  {us:7.3f}  {name}")


if __name__ == "__main__":
    main()
