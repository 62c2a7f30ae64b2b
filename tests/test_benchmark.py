"""The workload benchmark's own promises (querycache/benchmark/): every rewritten text of a read means
the same as the read (L3's canonical form proves it, and PostgreSQL, MariaDB and sqlite return the
same rows once the columns are put back), the generated data are what the checker computes them to
be on every database, the operation stream is a function of the seed, the count bound, the progress
lines, and a tiny run end to end on each database. The command itself is in tests/test_cli.py."""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import json
import random
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest

import querycache
from querycache.benchmark import runner
from querycache.benchmark import schema as sch
from querycache.benchmark.engines import ENGINES, Engine, engine
from querycache.benchmark.progress import GenerationProgress
from querycache.benchmark.worker import READ_WEIGHTS, WRITE_KINDS, Ops, Spec
from querycache.semantic.canonical import canonicalize, permutation
from tests.backends.test_redis import REDIS_URL
from tests.conftest import IN_CI, MYSQL, PG_DSN, require, run

MYSQL_URL = f"mysql://{MYSQL['user']}@{MYSQL['host']}:{MYSQL['port']}/{MYSQL['database']}"
SERVICE = {"postgres": "PostgreSQL", "mariadb": "MariaDB", "sqlite": "sqlite"}

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


def _target(name: str, directory: Path) -> str:
    return {"postgres": PG_DSN, "mariadb": MYSQL_URL, "sqlite": str(directory)}[name]


def _engine_up(name: str, directory: Path) -> Engine:
    db = engine(name, _target(name, directory))
    if name == "sqlite":  # a file: nothing to be down
        return db
    try:
        db.connect("wl_probe").close()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the service is absent
        require(SERVICE[name], exc)
    return db


def _drawn(scale: sch.Scale) -> dict[str, list[tuple[Any, ...]]]:
    """Per read, the fixed parameters and a few drawn by the workload itself."""
    ops, rng = Ops(_spec(scale)), random.Random(5)
    drawn: dict[str, list[tuple[Any, ...]]] = {kind: [PARAMS[kind]] for kind in READ_WEIGHTS}
    while min(len(v) for v in drawn.values()) < 4:
        kind, params, _ = ops.draw(rng)
        if kind in drawn and params not in drawn[kind]:
            drawn[kind].append(params)
    return drawn


@pytest.fixture(scope="module", params=ENGINES)
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Engine, str, sch.Scale]]:
    """A tiny shop generated on each database."""
    db = _engine_up(request.param, tmp_path_factory.mktemp("wl"))
    schema, scale = "wl_t" + uuid.uuid4().hex[:8], sch.Scale.of(0.004)
    try:
        db.prepare(schema)
        sch.create(lambda sql: db.execute(schema, sql), db.name, schema, scale, lambda *_: None)
        yield db, schema, scale
    finally:
        db.drop(schema)
        db.close()


@pytest.fixture(scope="module")
def workload_schema(tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[tuple[str, sch.Scale, dict[str, list[tuple[Any, ...]]]]]:
    """A tiny schema generated on PostgreSQL and, per read, a few parameter sets."""
    db = _engine_up("postgres", tmp_path_factory.mktemp("wl"))
    schema, scale = "wl_t" + uuid.uuid4().hex[:8], sch.Scale.of(0.004)
    try:
        db.prepare(schema)
        sch.create(lambda sql: db.execute(schema, sql), "postgres", schema, scale, lambda *_: None)
        yield schema, scale, _drawn(scale)
    finally:
        db.drop(schema)
        db.close()


def _rows(db: Engine, conn: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(sql, db.adapt(params))
        return [tuple(r) for r in cur.fetchall()]
    finally:
        cur.close()


def test_rewrites_return_the_same_rows_on_each_database(generated: tuple[Engine, str, sch.Scale]) -> None:
    db, schema, scale = generated
    drawn = _drawn(scale)
    conn = db.connect(schema)
    try:
        for kind, texts in sch.Sql(schema, db.name).variants.items():
            for params in drawn[kind]:
                expected = _rows(db, conn, texts[0].sql, params)
                assert expected or kind == "range", (db.name, kind, params)
                for text in texts[1:]:
                    assert text.restore(_rows(db, conn, text.sql, text.bind(params))) == expected, (db.name, kind)
    finally:
        conn.close()


def test_generated_data_are_what_the_checker_computes(generated: tuple[Engine, str, sch.Scale]) -> None:
    """The checker derives, without asking the database, which orders a customer has and which month
    an order is in: the generation on every database must agree with schema.order_customer and
    schema.order_month, and an order's amount is the sum of its items."""
    db, schema, scale = generated
    q = f"{schema}." if db.qualified else ""
    orders = db.execute(schema, f"SELECT id, customer_id, created_at, amount, version FROM {q}orders ORDER BY id")
    assert [r[0] for r in orders] == list(range(1, scale.orders + 1))
    for oid, customer, created, _, version in orders:
        assert customer == sch.order_customer(oid, scale) and version == 0
        when = created if isinstance(created, dt.datetime) else dt.datetime.fromisoformat(created)
        assert sch.month_start(sch.order_month(oid)) <= when.date() < sch.month_start(sch.order_month(oid) + 1)
    sums = dict(db.execute(schema, f"SELECT order_id, sum(qty * price) FROM {q}order_items GROUP BY order_id"))
    assert all(round(Decimal(str(amount)), 2) == round(Decimal(str(sums[oid])), 2) for oid, _, _, amount, _ in orders)
    prices = db.execute(schema, f"SELECT id, price FROM {q}products ORDER BY id")
    assert all(round(Decimal(str(price)) * 100) == sch.product_price_cents(pid) for pid, price in prices)
    counts = {t: db.one(schema, f"SELECT count(*) FROM {q}{t}") for t in ("customers", "products", "order_items")}
    assert counts == {"customers": scale.customers, "products": scale.products, "order_items": scale.items}


def test_a_new_order_item_takes_the_next_id(generated: tuple[Engine, str, sch.Scale]) -> None:
    """The workload inserts order items without an id: each database's identity continues after the
    generated ones (a setval on PostgreSQL)."""
    db, schema, scale = generated
    sql = sch.Sql(schema, db.name)
    conn = db.connect(schema)
    try:
        with db.transaction(conn) as cur:
            cur.execute(sql.insert_item, db.adapt((1, 1, 1, Decimal("1.37"))))
            cur.execute(sql.bump_order, db.adapt((Decimal("1.37"), 1)))
            if cur.description is None:  # MariaDB: no UPDATE ... RETURNING
                cur.execute(sql.order_version, (1,))
            assert [tuple(r) for r in cur.fetchall()] == [(1,)]
    finally:
        conn.close()
    q = f"{schema}." if db.qualified else ""
    assert db.one(schema, f"SELECT max(id) FROM {q}order_items") == scale.items + 1
    db.execute(schema, f"DELETE FROM {q}order_items WHERE id > {scale.items}")
    db.execute(schema, f"UPDATE {q}orders SET version = 0, amount = amount - 1.37 WHERE id = 1")


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


def test_the_count_bound_splits_over_processes_and_threads() -> None:
    scale = sch.Scale.of(0.004)
    for total, processes, threads in ((200, 1, 4), (203, 2, 3), (5, 3, 4)):
        shares = [total // processes + (p < total % processes) for p in range(processes)]
        specs = [Spec("uncached", p, threads, 0.0, 42, "wl_test", scale, 1.1, 0.05, "", "", "ns", 60, ops=share)
                 for p, share in enumerate(shares)]
        per_thread = [s.thread_ops(i) for s in specs for i in range(threads)]
        assert sum(per_thread) == total and max(per_thread) - min(per_thread) <= 1


def test_generation_progress_without_a_terminal_prints_numbered_lines() -> None:
    steps = sch.steps("sqlite", "wl_test", sch.Scale.of(0.004))
    out = io.StringIO()
    with GenerationProgress(steps, out) as progress:
        for step in steps:
            progress.done(step, 0.25)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(steps) and "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0].startswith(f"  [ 1/{len(steps)}   0%] table customers (0.2 s)")
    assert lines[-1] == f"  [{len(steps)}/{len(steps)} 100%] statistics (0.2 s)"
    # 100 customers + 50 products + 1,000 orders of 4,150 rows: 28 %
    assert "  [ 7/13  28%] orders 1,000 / 1,000 (0.2 s)" in lines and len(steps) == 13


def test_duration_and_ops_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        runner.parse(["--duration", "3", "--ops", "100"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    args = runner.parse(["--ops", "100", "--database", "sqlite"])
    assert args.ops == 100 and args.duration == 0.0 and args.database == "sqlite"


def _redis_up() -> None:
    import redis

    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3) as client:
            client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the service is absent
        require("Redis", exc)


CONTENDERS = ["uncached", "qc-mem", "qc-redis", "aside-ttl"]


@pytest.mark.parametrize("name", ENGINES)
def test_a_tiny_count_bounded_run_on_each_database(name: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = _engine_up(name, tmp_path / "sqlite")
    _redis_up()
    out = tmp_path / "out"
    argv = ["--database", name, "--scale", "0.01", "--ops", "200", "--threads", "2",
            "--contenders", ",".join(CONTENDERS), "--redis-url", REDIS_URL, "--out", str(out)]
    argv += {"postgres": ["--pg-dsn", PG_DSN], "mariadb": ["--mysql-url", MYSQL_URL],
             "sqlite": ["--sqlite-dir", str(tmp_path / "sqlite")]}[name]
    status = runner.main(argv)
    printed = capsys.readouterr().out
    assert status == 0, printed[-3000:]
    data = json.loads((out / "workload.json").read_text())
    assert data["config"]["bound"] == "ops" and data["database"]["engine"] == name
    assert [c["contender"] for c in data["contenders"]] == CONTENDERS
    for c in data["contenders"]:
        assert c["ops"] == 200 and c["errors"] == 0 and c["hung_threads"] == 0, c["error_samples"]
        assert c["checked_reads"] > 0 and c["stale_reads_from_db"] == 0, c["stale_samples"]
        if c["contender"] != "aside-ttl":  # the TTL cache is allowed its stale reads: that is the point
            assert c["stale_reads"] == 0, c["stale_samples"]
        assert (c["pg_table_scans"] is not None) == (name == "postgres")
    assert data["contenders"][2]["querycache"]["lookups"] > 0
    table = (out / "workload.md").read_text()
    assert "200 operations per contender (count-bounded)" in table and "| qc-redis |" in table
    if name != "postgres":
        assert "| qc-mem | " in table and " | - | 0 / " in table  # no table scan counters: "-"
    assert not db.exists(data["schema"]), f"{db.where(data['schema'])} was not dropped"
    assert f"dropped {db.where(data['schema'])}" in printed
