"""Invalidation: what writes bump and how it is published.

``keys`` builds every version key; ``rows`` and ``row_writes`` narrow a write's footprint to
the rows it touched; ``publisher`` runs the two phases of a write; ``capture`` listens to
PostgreSQL for writes made past the wrapper (docs/freshness.md).
"""
