"""The workload benchmark's own promises (querycache/benchmark/): every rewritten text of a read means
the same as the read (L3's canonical form proves it, and PostgreSQL returns the same rows once the
columns are put back), the operation stream is a function of the seed, the checker's arithmetic.
The command end to end is in tests/test_cli.py."""

from __future__ import annotations

import datetime as dt
import importlib.util
import random
import uuid
from typing import Any, Iterator

import pytest

import querycache
from querycache.benchmark import schema as sch
from querycache.benchmark.worker import READ_WEIGHTS, WRITE_KINDS, Ops, Spec
from querycache.semantic.canonical import canonicalize, permutation
from tests.conftest import IN_CI, PG_DSN, require, run

# Distinct values in every position, so that a parameter map that swaps two of them changes the form.
PARAMS: dict[str, tuple[Any, ...]] = {
    "customer": (7,),
    "order": (11,),
    "range": (3, dt.date(2024, 3, 1), dt.date(2025, 3, 1)),
    "revenue": (dt.date(2024, 5, 1), dt.date(2024, 8, 1)),
    "top": (dt.date(2024, 6, 1), dt.date(2024, 7, 1)),
}


def _spec(scale: sch.Scale, rewrite_share: float = 0.2) -> Spec:
    return Spec("uncached", 0, 1, 1.0, 42, "wl_test", scale, 1.1, 0.05, "", "", "ns", 60, rewrite_share)


def test_every_read_has_its_rewrites() -> None:
    sql = sch.Sql("wl_test")
    assert set(sql.variants) == set(READ_WEIGHTS)
    for kind, texts in sql.variants.items():
        assert len(texts) == 1 + sch.REWRITES, kind
        assert texts[0].sql == getattr(sql, kind) and not texts[0].params and not texts[0].columns
        assert len({t.sql for t in texts}) == len(texts), kind


@pytest.mark.parametrize("kind", sorted(READ_WEIGHTS))
def test_rewrites_are_proven_equal_by_the_canonical_form(kind: str) -> None:
    texts = sch.Sql("wl_test").variants[kind]
    params = PARAMS[kind]
    base = canonicalize(texts[0].sql, "postgres", "format", params)
    for text in texts[1:]:
        rewritten = canonicalize(text.sql, "postgres", "format", text.bind(params))
        assert rewritten.form == base.form and rewritten.guards == base.guards, text.sql
        # L3 serves the entry's columns permuted into the rewrite's order: the same map restore() undoes.
        assert permutation(rewritten, base) == (text.columns or tuple(range(len(base.outputs))))


def test_restore_puts_the_columns_back() -> None:
    text = sch.Variant("x", params=(2, 0, 1), columns=(2, 0, 1))
    assert text.bind(("a", "b", "c")) == ("c", "a", "b")
    assert text.restore([("z", "x", "y")]) == [("x", "y", "z")]


@pytest.fixture(scope="module")
def workload_schema() -> Iterator[tuple[str, sch.Scale, dict[str, list[tuple[Any, ...]]]]]:
    """A tiny generated schema and, per read, a few parameter sets drawn by the workload itself."""
    import psycopg

    try:
        conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the service is absent
        require("PostgreSQL", exc)
    schema, scale = "wl_t" + uuid.uuid4().hex[:8], sch.Scale.of(0.004)
    try:
        sch.create(conn, schema, scale, lambda _: None)
        ops, rng = Ops(_spec(scale)), random.Random(5)
        drawn: dict[str, list[tuple[Any, ...]]] = {kind: [PARAMS[kind]] for kind in READ_WEIGHTS}
        while min(len(v) for v in drawn.values()) < 4:
            kind, params, _ = ops.draw(rng)
            if kind in drawn and params not in drawn[kind]:
                drawn[kind].append(params)
        yield schema, scale, drawn
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


def test_rewrites_return_the_same_rows_on_postgresql(workload_schema: Any) -> None:
    import psycopg

    schema, _, drawn = workload_schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for kind, texts in sch.Sql(schema).variants.items():
            for params in drawn[kind]:
                expected = conn.execute(texts[0].sql, params).fetchall()
                assert expected or kind == "range", (kind, params)
                for text in texts[1:]:
                    assert text.restore(conn.execute(text.sql, text.bind(params)).fetchall()) == expected


def test_l3_answers_the_rewrites_of_a_read_it_has_seen(workload_schema: Any) -> None:
    """What the qc-redis-l3 contender relies on: after a read, each of its rewrites is an L3 hit
    (here on the memory store), with the rows the database gives."""
    if any(importlib.util.find_spec(m) is None for m in ("numpy", "faiss")):
        if IN_CI:
            raise RuntimeError("the 'semantic' extra is required under CI=true")
        pytest.skip("the 'semantic' extra is not installed")
    import psycopg

    from querycache.semantic.tier import wait_until_indexed

    schema, _, drawn = workload_schema
    cache = querycache.QueryCache.from_dict({"l3": {"enabled": True, "model": "ngram", "all_reads": True,
                                                    "budget_ms": 10000}})
    assert cache.l3 is not None and cache.l3.worker.wait_ready(60)
    conn = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
    try:
        indexed = 0
        for kind, texts in sch.Sql(schema).variants.items():
            params = drawn[kind][1]
            expected, status = run(conn, texts[0].sql, params)
            assert status == "miss"
            indexed += 1
            assert wait_until_indexed(cache.l3, indexed)
            for text in texts[1:]:
                rows, status = run(conn, text.sql, text.bind(params))
                assert status == "hit:L3", (kind, text.sql, cache.stats().to_dict()["semantic"])
                assert text.restore(rows) == expected
    finally:
        conn.close()
        cache.close()


def _stream(ops: Ops, n: int) -> list[tuple[str, tuple[Any, ...], int]]:
    rng = random.Random(1)
    return [ops.draw(rng) for _ in range(n)]


def test_the_operation_stream_is_a_function_of_the_seed() -> None:
    scale = sch.Scale.of(0.004)
    ops = _stream(Ops(_spec(scale)), 4000)
    assert ops == _stream(Ops(_spec(scale)), 4000)
    assert {kind for kind, _, _ in ops} == set(READ_WEIGHTS) | set(WRITE_KINDS)
    reads = [op for op in ops if op[0] in READ_WEIGHTS]
    rewritten = [op for op in reads if op[2]]
    assert 0.15 < len(rewritten) / len(reads) < 0.25  # the default --rewrites 0.2
    assert {variant for _, _, variant in rewritten} == set(range(1, sch.REWRITES + 1))
    assert all(variant == 0 for kind, _, variant in ops if kind in WRITE_KINDS)
    customer_writes = [params for kind, params, _ in ops if kind == "w_customer"]
    assert customer_writes and all(1 <= cid <= scale.customers for _, _, cid in customer_writes)
    assert all(variant == 0 for _, _, variant in _stream(Ops(_spec(scale, rewrite_share=0.0)), 500))
