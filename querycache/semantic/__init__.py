"""L3, the semantic tier (docs/architecture.md): an index over L2 entries that finds an earlier statement
equivalent to this one. ``canonical`` (sqlglot only) proves equivalence; the embedder, the
index and the worker need the ``semantic`` extra and are imported only when L3 is enabled."""
