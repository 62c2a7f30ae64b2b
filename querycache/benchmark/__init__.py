"""The benchmarks that ship with the package, behind ``querycache bench`` (the developers' benchmarks,
pytest-benchmark and scripts, are ``bench/`` in the repository; docs/benchmarks.md):

- ``hotpath.py``: ``querycache bench``, the L1 hit and a miss against a raw sqlite point query;
- the workload benchmark, ``querycache bench workload`` (``python -m bench`` from a checkout):
  ``runner.py`` orchestrates, ``schema.py`` generates the data and the SQL, ``engines.py`` speaks to
  the databases, ``worker.py`` runs one contender, ``report.py`` writes the table and the figures,
  ``progress.py`` shows the data's generation.

The workload: a generated shop schema on PostgreSQL (default), MariaDB or sqlite
(``--database``), a Zipfian read/write mix, the contenders (uncached, querycache L1 / L1+L2 memory /
L1+L2 Redis and variants, a hand-written Redis cache-aside with TTL, dogpile.cache on Redis), one after
another with the same seeds, each for ``--duration`` seconds or ``--ops`` operations, and a checker
that counts stale reads.

    querycache bench workload --quick      # scale 0.05, 5 s per contender (~1 minute)
    querycache bench workload --sweep      # 1.02M rows, 20 s per contender, + threads sweep
    python -m bench --quick                # the same, from a checkout

Part of the package so that both commands run wherever querycache is installed; nothing here is
imported by ``import querycache`` (psycopg, redis and dogpile.cache load in the runner's processes).
The workload needs the ``redis`` extra, the ``postgres`` or ``mysql`` one for those databases, and dogpile.cache
for that contender; the caching contenders use Redis on every database.

Writes ``bench/results/workload.json`` and ``bench/results/workload.md`` (``--out``; relative to the
current directory) and prints the table. The dataset ``wl_<hex>`` (a schema on PostgreSQL, a
database on MariaDB, a file in a temporary directory on sqlite) is dropped and this run's Redis keys
are deleted at the end, even on error (``--keep`` keeps it; ``--schema wl_...`` reuses one).

The checker: every write bumps the ``version`` of the order or customer it touches, in the same
statement, and after the commit returned records the committed version in memory shared by all worker
processes (MariaDB has no UPDATE ... RETURNING: there the version is read back afterwards, a version
committed by then). Reads return the versions they depend on (a customer's, an order's, a customer's orders', or
for the aggregates the sum of the versions of every order of the period); a read is stale when it sees
less than what was recorded before it started.
"""
