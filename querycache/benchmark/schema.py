"""The generated shop schema, its deterministic layout, and the workload's SQL.

Every generated value is a function of the row's id, so each worker process can compute, without
asking the database, which orders belong to a customer and which month an order falls in: the
correctness checker needs both to know, before a read starts, which committed versions that read
must at least see.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BASE_DATE = dt.date(2024, 1, 1)
DAYS = 730  # orders span 2024-01-01 .. 2025-12-30
MONTHS = 24
ITEMS_PER_ORDER = 3
CATEGORIES = 25
REGIONS = 20
REWRITES = 2  # rewritten texts per read (Sql.variants)
STATUSES = ("new", "paid", "shipped", "delivered", "returned")
# Multipliers of the id -> value permutations (primes, coprime with every scale's table sizes
# except by accident; the mapping need not be a bijection, only deterministic).
ORDER_DAY_MUL = 7919
ORDER_CUSTOMER_MUL = 104729
ITEM_PRODUCT_MUL = 7727


@dataclass(frozen=True)
class Scale:
    customers: int
    products: int
    orders: int

    @property
    def items(self) -> int:
        return self.orders * ITEMS_PER_ORDER

    @property
    def total_rows(self) -> int:
        return self.customers + self.products + self.orders + self.items

    @staticmethod
    def of(factor: float) -> Scale:
        """Scale 1.0: 20k customers, 2k products, 250k orders, 750k order items (1.022M rows)."""
        return Scale(max(100, int(20_000 * factor)), max(50, int(2_000 * factor)), max(1_000, int(250_000 * factor)))


def _month_index(day: int) -> int:
    d = BASE_DATE + dt.timedelta(days=day)
    return (d.year - BASE_DATE.year) * 12 + d.month - 1


MONTH_OF_DAY = [_month_index(d) for d in range(DAYS)]


def month_start(m: int) -> dt.date:
    return dt.date(BASE_DATE.year + m // 12, m % 12 + 1, 1)


def order_month(order_id: int) -> int:
    return MONTH_OF_DAY[(order_id * ORDER_DAY_MUL) % DAYS]


def order_customer(order_id: int, scale: Scale) -> int:
    return 1 + (order_id * ORDER_CUSTOMER_MUL) % scale.customers


def product_price_cents(product_id: int) -> int:
    return (product_id * 37) % 10_000 + 100


class Layout:
    """What a worker derives from the scale: orders per customer, months per order."""

    def __init__(self, scale: Scale) -> None:
        self.scale = scale
        self.month = [0] * (scale.orders + 1)
        self.by_customer: list[list[int]] = [[] for _ in range(scale.customers + 1)]
        for oid in range(1, scale.orders + 1):
            self.month[oid] = order_month(oid)
            self.by_customer[order_customer(oid, scale)].append(oid)


@dataclass(frozen=True)
class Variant:
    """One text of a read. The first variant of each read is the statement as the workload writes it;
    the others are rewrites, which take the same parameters in another order (the rewrite's k-th
    parameter is the statement's ``params[k]``) and return the same columns in another order (the
    rewrite's k-th column is the statement's ``columns[k]``)."""

    sql: str
    params: tuple[int, ...] = ()
    columns: tuple[int, ...] = ()

    def bind(self, params: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(params[i] for i in self.params) if self.params else params

    def restore(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows in the statement's column order, whatever order this text asked for."""
        if not self.columns:
            return rows
        back = sorted(range(len(self.columns)), key=self.columns.__getitem__)
        return [tuple(row[j] for j in back) for row in rows]


class Sql:
    """The workload's statements for one schema. Reads return the ``version`` of what they depend on
    (a customer's, an order's, or the sum of the versions of a period's orders)."""

    def __init__(self, schema: str) -> None:
        s = schema
        self.customer = f"SELECT id, name, region, created_at, version FROM {s}.customers WHERE id = %s"
        self.order = (
            f"SELECT o.id, o.status, o.amount, o.version, i.id, i.product_id, i.qty, i.price "
            f"FROM {s}.orders o LEFT JOIN {s}.order_items i ON i.order_id = o.id WHERE o.id = %s ORDER BY i.id"
        )
        self.range = (
            f"SELECT id, created_at, status, amount, version FROM {s}.orders "
            f"WHERE customer_id = %s AND created_at >= %s AND created_at < %s ORDER BY created_at, id"
        )
        # Expensive aggregates. The last column is the sum of the versions of every order of the
        # period: a committed write to any of them raises it by one. (Both references to the CTE carry
        # an alias: L3 cannot prove anything about a statement that names one table twice bare.)
        self.revenue = (
            f"WITH period AS (SELECT id, version FROM {s}.orders WHERE created_at >= %s AND created_at < %s) "
            f"SELECT p.category, sum(i.qty * i.price) AS revenue, count(*) AS items, "
            f"(SELECT sum(pv.version) FROM period pv) AS vsum "
            f"FROM period o JOIN {s}.order_items i ON i.order_id = o.id JOIN {s}.products p ON p.id = i.product_id "
            f"GROUP BY p.category ORDER BY p.category"
        )
        self.top = (
            f"SELECT customer_id, sum(amount) AS total, count(*) AS orders, sum(sum(version)) OVER () AS vsum "
            f"FROM {s}.orders WHERE created_at >= %s AND created_at < %s "
            f"GROUP BY customer_id ORDER BY total DESC, customer_id LIMIT 10"
        )
        self.update_order = (
            f"UPDATE {s}.orders SET status = %s, amount = amount + %s, version = version + 1 "
            f"WHERE id = %s RETURNING version"
        )
        self.insert_item = f"INSERT INTO {s}.order_items (order_id, product_id, qty, price) VALUES (%s, %s, %s, %s)"
        self.bump_order = (
            f"UPDATE {s}.orders SET amount = amount + %s, version = version + 1 WHERE id = %s RETURNING version"
        )
        self.update_customer = (
            f"UPDATE {s}.customers SET name = %s, region = %s, version = version + 1 WHERE id = %s RETURNING version"
        )
        self.warm = f"SELECT id FROM {s}.products WHERE id = %s"
        # Each read as written, then rewritten as another programmer (or ORM) would: other aliases, column
        # order, predicate order, operands of a comparison swapped, JOIN ... ON vs comma joins, COUNT(1).
        # Every rewrite means the same and L3's canonical form proves it (tests/test_benchmark.py).
        self.variants: dict[str, tuple[Variant, ...]] = {
            "customer": (
                Variant(self.customer),
                Variant(f"SELECT c.version, c.name, c.id, c.created_at, c.region FROM {s}.customers c "
                        f"WHERE c.id = %s", columns=(4, 1, 0, 3, 2)),
                Variant(f"SELECT name, id, version, region, created_at FROM {s}.customers AS cu WHERE %s = cu.id",
                        columns=(1, 0, 4, 2, 3)),
            ),
            "order": (
                Variant(self.order),
                Variant(f"SELECT ord.version, ord.id, itm.id, ord.status, itm.product_id, ord.amount, itm.price, "
                        f"itm.qty FROM {s}.orders ord LEFT JOIN {s}.order_items itm ON ord.id = itm.order_id "
                        f"WHERE %s = ord.id ORDER BY itm.id", columns=(3, 0, 4, 1, 5, 2, 7, 6)),
                Variant(f"SELECT x.id, x.status, x.amount, x.version, y.id, y.product_id, y.qty, y.price "
                        f"FROM {s}.orders x LEFT JOIN {s}.order_items y ON (y.order_id = x.id) WHERE x.id = %s "
                        f"ORDER BY y.id"),
            ),
            "range": (
                Variant(self.range),
                Variant(f"SELECT version, amount, status, created_at, id FROM {s}.orders "
                        f"WHERE created_at >= %s AND created_at < %s AND customer_id = %s ORDER BY created_at, id",
                        params=(1, 2, 0), columns=(4, 3, 2, 1, 0)),
                Variant(f"SELECT o.id, o.created_at, o.status, o.amount, o.version FROM {s}.orders o "
                        f"WHERE %s > o.created_at AND o.customer_id = %s AND %s <= o.created_at "
                        f"ORDER BY o.created_at, o.id", params=(2, 0, 1)),
            ),
            "revenue": (
                Variant(self.revenue),
                Variant(f"WITH period AS (SELECT id, version FROM {s}.orders WHERE created_at < %s "
                        f"AND created_at >= %s) SELECT (SELECT sum(x.version) FROM period x) AS vsum, "
                        f"count(1) AS items, sum(li.qty * li.price) AS revenue, pr.category "
                        f"FROM period po, {s}.order_items li, {s}.products pr "
                        f"WHERE li.order_id = po.id AND pr.id = li.product_id GROUP BY pr.category "
                        f"ORDER BY pr.category", params=(1, 0), columns=(3, 2, 1, 0)),
                Variant(f"WITH period AS (SELECT id, version FROM {s}.orders WHERE created_at >= %s "
                        f"AND created_at < %s) SELECT p.category, count(*) AS items, sum(i.qty * i.price) AS revenue, "
                        f"(SELECT sum(pv.version) FROM period pv) AS vsum FROM {s}.products p "
                        f"JOIN {s}.order_items i ON i.product_id = p.id JOIN period o ON o.id = i.order_id "
                        f"GROUP BY p.category ORDER BY p.category", columns=(0, 2, 1, 3)),
            ),
            "top": (
                Variant(self.top),
                Variant(f"SELECT sum(sum(version)) OVER () AS vsum, count(*) AS orders, sum(amount) AS total, "
                        f"customer_id FROM {s}.orders WHERE created_at < %s AND created_at >= %s "
                        f"GROUP BY customer_id ORDER BY total DESC, customer_id LIMIT 10",
                        params=(1, 0), columns=(3, 2, 1, 0)),
                Variant(f"SELECT t.customer_id, sum(t.amount) AS total, count(1) AS orders, "
                        f"sum(sum(t.version)) OVER () AS vsum FROM {s}.orders t "
                        f"WHERE %s <= t.created_at AND t.created_at < %s "
                        f"GROUP BY t.customer_id ORDER BY total DESC, customer_id LIMIT 10"),
            ),
        }


def create(admin: Any, schema: str, scale: Scale, log: Callable[[str], None]) -> None:
    """Create and fill the schema in the database (``INSERT ... SELECT ... FROM generate_series``)."""
    s = schema
    price = "((({p}) * 37) % 10000 + 100) / 100.0"

    def run(label: str, sql: str) -> None:
        t0 = time.monotonic()
        admin.execute(sql)
        log(f"  {label} ({time.monotonic() - t0:.1f} s)")

    log(f"generating schema {s}: {scale.total_rows:,} rows "
        f"({scale.customers:,} customers, {scale.products:,} products, {scale.orders:,} orders, {scale.items:,} items)")
    admin.execute(f"CREATE SCHEMA {s}")
    admin.execute(
        f"CREATE TABLE {s}.customers (id int PRIMARY KEY, name text NOT NULL, region int NOT NULL, "
        f"created_at timestamp NOT NULL, version int NOT NULL DEFAULT 0)")
    admin.execute(
        f"CREATE TABLE {s}.products (id int PRIMARY KEY, name text NOT NULL, category int NOT NULL, "
        f"price numeric(10,2) NOT NULL)")
    admin.execute(
        f"CREATE TABLE {s}.orders (id int PRIMARY KEY, customer_id int NOT NULL, created_at timestamp NOT NULL, "
        f"status text NOT NULL, amount numeric(14,2) NOT NULL, version int NOT NULL DEFAULT 0)")
    admin.execute(
        f"CREATE TABLE {s}.order_items (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        f"order_id int NOT NULL, product_id int NOT NULL, qty int NOT NULL, price numeric(10,2) NOT NULL)")
    run(f"customers: {scale.customers:,}",
        f"INSERT INTO {s}.customers SELECT g, 'customer ' || g, g % {REGIONS}, "
        f"timestamp '2022-01-01' + (g % 700) * interval '1 day', 0 FROM generate_series(1, {scale.customers}) g")
    run(f"products: {scale.products:,}",
        f"INSERT INTO {s}.products SELECT g, 'product ' || g, g % {CATEGORIES}, {price.format(p='g')} "
        f"FROM generate_series(1, {scale.products}) g")
    item_product = f"1 + (i * {ITEM_PRODUCT_MUL}) % {scale.products}"
    chunk = 100_000
    for lo in range(1, scale.orders + 1, chunk):
        hi = min(scale.orders, lo + chunk - 1)
        run(f"orders {hi:,} / {scale.orders:,}",
            f"INSERT INTO {s}.orders SELECT g, 1 + (g::bigint * {ORDER_CUSTOMER_MUL}) % {scale.customers}, "
            f"timestamp '{BASE_DATE.isoformat()}' + ((g::bigint * {ORDER_DAY_MUL}) % {DAYS}) * interval '1 day' "
            f"+ (g % 86400) * interval '1 second', "
            f"(ARRAY{list(STATUSES[:4])})[1 + g % 4], "
            f"(SELECT sum((1 + i % 5) * {price.format(p=item_product)}) "
            f"FROM generate_series(({ITEMS_PER_ORDER} * (g::bigint - 1)) + 1, {ITEMS_PER_ORDER} * g::bigint) i), 0 "
            f"FROM generate_series({lo}, {hi}) g")
    chunk = 250_000
    for lo in range(1, scale.items + 1, chunk):
        hi = min(scale.items, lo + chunk - 1)
        run(f"order_items {hi:,} / {scale.items:,}",
            f"INSERT INTO {s}.order_items (id, order_id, product_id, qty, price) "
            f"SELECT i, (i - 1) / {ITEMS_PER_ORDER} + 1, {item_product}, 1 + i % 5, {price.format(p=item_product)} "
            f"FROM generate_series({lo}::bigint, {hi}::bigint) i")
    admin.execute(f"SELECT setval(pg_get_serial_sequence('{s}.order_items', 'id'), {scale.items})")
    run("index orders(customer_id, created_at)",
        f"CREATE INDEX ON {s}.orders (customer_id, created_at)")
    run("index orders(created_at)", f"CREATE INDEX ON {s}.orders (created_at)")
    run("index order_items(order_id)", f"CREATE INDEX ON {s}.order_items (order_id)")
    run("index order_items(product_id)", f"CREATE INDEX ON {s}.order_items (product_id)")
    run("VACUUM ANALYZE", f"VACUUM ANALYZE {s}.customers, {s}.products, {s}.orders, {s}.order_items")
