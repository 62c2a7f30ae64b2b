"""What the test suite (``tests/``) and the benchmark scripts (``bench/``) share, so that the
scripts never import a test module: not part of the public API (``querycache.__all__``), and not
imported by ``import querycache``.

- ``redis_server``: a redis-server of the caller's own, on a free port, that may be killed and
  started again;
- ``corpus``: the semantic query-pair corpora (``tests/corpus/semantic``) and the rule their
  results are compared by.
- ``semantic_eval``: L3 evaluated on those corpora on PostgreSQL (``tests/test_semantic_eval.py``
  and ``bench/semantic_corpus.py``).
"""
