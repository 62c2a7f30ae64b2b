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

    def __init__(self, schema: str, dialect: str = "postgres") -> None:
        """``schema``: the dataset; ``dialect``: postgres, mariadb or sqlite (its tables are unqualified:
        the dataset is the file; its placeholder is ``?``)."""
        q = f"{schema}." if dialect != "sqlite" else ""
        self.customer = f"SELECT id, name, region, created_at, version FROM {q}customers WHERE id = %s"
        self.order = (
            f"SELECT o.id, o.status, o.amount, o.version, i.id, i.product_id, i.qty, i.price "
            f"FROM {q}orders o LEFT JOIN {q}order_items i ON i.order_id = o.id WHERE o.id = %s ORDER BY i.id"
        )
        self.range = (
            f"SELECT id, created_at, status, amount, version FROM {q}orders "
            f"WHERE customer_id = %s AND created_at >= %s AND created_at < %s ORDER BY created_at, id"
        )
        # Expensive aggregates. The last column is the sum of the versions of every order of the
        # period: a committed write to any of them raises it by one. (Both references to the CTE carry
        # an alias: L3 cannot prove anything about a statement that names one table twice bare.)
        self.revenue = (
            f"WITH period AS (SELECT id, version FROM {q}orders WHERE created_at >= %s AND created_at < %s) "
            f"SELECT p.category, sum(i.qty * i.price) AS revenue, count(*) AS items, "
            f"(SELECT sum(pv.version) FROM period pv) AS vsum "
            f"FROM period o JOIN {q}order_items i ON i.order_id = o.id JOIN {q}products p ON p.id = i.product_id "
            f"GROUP BY p.category ORDER BY p.category"
        )
        self.top = (
            f"SELECT customer_id, sum(amount) AS total, count(*) AS orders, sum(sum(version)) OVER () AS vsum "
            f"FROM {q}orders WHERE created_at >= %s AND created_at < %s "
            f"GROUP BY customer_id ORDER BY total DESC, customer_id LIMIT 10"
        )
        # Every write bumps a version. Where UPDATE has no RETURNING (MariaDB), the version is read back
        # with order_version / customer_version (worker.Client.bump, worker._bumped).
        self.update_returns = dialect != "mariadb"
        returning = " RETURNING version" if self.update_returns else ""
        self.update_order = (
            f"UPDATE {q}orders SET status = %s, amount = amount + %s, version = version + 1 "
            f"WHERE id = %s{returning}"
        )
        self.insert_item = f"INSERT INTO {q}order_items (order_id, product_id, qty, price) VALUES (%s, %s, %s, %s)"
        self.bump_order = (
            f"UPDATE {q}orders SET amount = amount + %s, version = version + 1 WHERE id = %s{returning}"
        )
        self.update_customer = (
            f"UPDATE {q}customers SET name = %s, region = %s, version = version + 1 WHERE id = %s{returning}"
        )
        self.order_version = f"SELECT version FROM {q}orders WHERE id = %s"
        self.customer_version = f"SELECT version FROM {q}customers WHERE id = %s"
        self.warm = f"SELECT id FROM {q}products WHERE id = %s"
        # Each read as written, then rewritten as another programmer (or ORM) would: other aliases, column
        # order, predicate order, operands of a comparison swapped, JOIN ... ON vs comma joins, COUNT(1).
        # Every rewrite means the same and L3's canonical form proves it (tests/test_benchmark.py).
        self.variants: dict[str, tuple[Variant, ...]] = {
            "customer": (
                Variant(self.customer),
                Variant(f"SELECT c.version, c.name, c.id, c.created_at, c.region FROM {q}customers c "
                        f"WHERE c.id = %s", columns=(4, 1, 0, 3, 2)),
                Variant(f"SELECT name, id, version, region, created_at FROM {q}customers AS cu WHERE %s = cu.id",
                        columns=(1, 0, 4, 2, 3)),
            ),
            "order": (
                Variant(self.order),
                Variant(f"SELECT ord.version, ord.id, itm.id, ord.status, itm.product_id, ord.amount, itm.price, "
                        f"itm.qty FROM {q}orders ord LEFT JOIN {q}order_items itm ON ord.id = itm.order_id "
                        f"WHERE %s = ord.id ORDER BY itm.id", columns=(3, 0, 4, 1, 5, 2, 7, 6)),
                Variant(f"SELECT x.id, x.status, x.amount, x.version, y.id, y.product_id, y.qty, y.price "
                        f"FROM {q}orders x LEFT JOIN {q}order_items y ON (y.order_id = x.id) WHERE x.id = %s "
                        f"ORDER BY y.id"),
            ),
            "range": (
                Variant(self.range),
                Variant(f"SELECT version, amount, status, created_at, id FROM {q}orders "
                        f"WHERE created_at >= %s AND created_at < %s AND customer_id = %s ORDER BY created_at, id",
                        params=(1, 2, 0), columns=(4, 3, 2, 1, 0)),
                Variant(f"SELECT o.id, o.created_at, o.status, o.amount, o.version FROM {q}orders o "
                        f"WHERE %s > o.created_at AND o.customer_id = %s AND %s <= o.created_at "
                        f"ORDER BY o.created_at, o.id", params=(2, 0, 1)),
            ),
            "revenue": (
                Variant(self.revenue),
                Variant(f"WITH period AS (SELECT id, version FROM {q}orders WHERE created_at < %s "
                        f"AND created_at >= %s) SELECT (SELECT sum(x.version) FROM period x) AS vsum, "
                        f"count(1) AS items, sum(li.qty * li.price) AS revenue, pr.category "
                        f"FROM period po, {q}order_items li, {q}products pr "
                        f"WHERE li.order_id = po.id AND pr.id = li.product_id GROUP BY pr.category "
                        f"ORDER BY pr.category", params=(1, 0), columns=(3, 2, 1, 0)),
                Variant(f"WITH period AS (SELECT id, version FROM {q}orders WHERE created_at >= %s "
                        f"AND created_at < %s) SELECT p.category, count(*) AS items, sum(i.qty * i.price) AS revenue, "
                        f"(SELECT sum(pv.version) FROM period pv) AS vsum FROM {q}products p "
                        f"JOIN {q}order_items i ON i.product_id = p.id JOIN period o ON o.id = i.order_id "
                        f"GROUP BY p.category ORDER BY p.category", columns=(0, 2, 1, 3)),
            ),
            "top": (
                Variant(self.top),
                Variant(f"SELECT sum(sum(version)) OVER () AS vsum, count(*) AS orders, sum(amount) AS total, "
                        f"customer_id FROM {q}orders WHERE created_at < %s AND created_at >= %s "
                        f"GROUP BY customer_id ORDER BY total DESC, customer_id LIMIT 10",
                        params=(1, 0), columns=(3, 2, 1, 0)),
                Variant(f"SELECT t.customer_id, sum(t.amount) AS total, count(1) AS orders, "
                        f"sum(sum(t.version)) OVER () AS vsum FROM {q}orders t "
                        f"WHERE %s <= t.created_at AND t.created_at < %s "
                        f"GROUP BY t.customer_id ORDER BY total DESC, customer_id LIMIT 10"),
            ),
        }
        if dialect == "sqlite":
            self._placeholders("?")

    def _placeholders(self, mark: str) -> None:
        """Every text with ``mark`` for ``%s`` (no text here has another ``%``)."""
        for name, value in vars(self).items():
            if isinstance(value, str):
                setattr(self, name, value.replace("%s", mark))
        self.variants = {kind: tuple(Variant(v.sql.replace("%s", mark), v.params, v.columns) for v in texts)
                         for kind, texts in self.variants.items()}


@dataclass(frozen=True)
class Step:
    """One statement of the generation; ``rows``: the rows it inserts (0: DDL, an index, statistics)."""

    label: str
    sql: str
    rows: int = 0


CHUNK_ROWS = 50_000  # rows per INSERT: a progress step, and a short transaction


def _numbers(dialect: str, lo: int, hi: int) -> str:
    """A derived table of the integers ``lo``..``hi`` in a column ``g`` (bigint), made by the database:
    generate_series on PostgreSQL, the sequence engine's ``seq_<lo>_to_<hi>`` on MariaDB (1M rows in
    about 1.1 s here, against 1.5 s for a recursive CTE), a recursive CTE on sqlite (whose
    generate_series is a loadable extension, absent from Python's build)."""
    if dialect == "postgres":
        return f"generate_series({lo}::bigint, {hi}::bigint) AS n(g)"
    if dialect == "mariadb":
        return f"(SELECT seq AS g FROM seq_{lo}_to_{hi}) AS n"
    return f"(WITH RECURSIVE r(g) AS (SELECT {lo} UNION ALL SELECT g + 1 FROM r WHERE g < {hi}) SELECT g FROM r) AS n"


class _Dialect:
    """The expressions that differ between the three databases."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def div(self, a: str, b: int) -> str:
        return f"({a}) DIV {b}" if self.dialect == "mariadb" else f"({a}) / {b}"

    def concat(self, text: str, value: str) -> str:
        if self.dialect == "mariadb":  # || is OR there
            return f"CONCAT('{text}', {value})"
        return f"'{text}' || {value}"

    def timestamp(self, base: str, days: str, seconds: str = "0") -> str:
        if self.dialect == "postgres":
            return f"timestamp '{base}' + ({days}) * interval '1 day' + ({seconds}) * interval '1 second'"
        if self.dialect == "mariadb":
            return f"TIMESTAMP '{base} 00:00:00' + INTERVAL ({days}) DAY + INTERVAL ({seconds}) SECOND"
        # ISO text: compares with ISO dates in time order
        return f"datetime('{base}', '+' || ({days}) || ' days', '+' || ({seconds}) || ' seconds')"

    def types(self) -> dict[str, str]:
        if self.dialect == "postgres":
            return {"text": "text", "ts": "timestamp", "money": "numeric(14,2)", "price": "numeric(10,2)",
                    "item_id": "bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"}
        if self.dialect == "mariadb":
            return {"text": "varchar(64)", "ts": "datetime", "money": "decimal(14,2)", "price": "decimal(10,2)",
                    "item_id": "bigint AUTO_INCREMENT PRIMARY KEY"}
        # INTEGER PRIMARY KEY is the rowid: a row inserted without an id takes the highest one + 1
        return {"text": "text", "ts": "text", "money": "numeric", "price": "numeric",
                "item_id": "integer PRIMARY KEY"}


def _price_cents(product: str) -> str:
    """schema.product_price_cents in SQL."""
    return f"((({product}) * 37) % 10000 + 100)"


def steps(dialect: str, schema: str, scale: Scale) -> list[Step]:
    """The statements that create and fill ``schema`` at ``scale`` in the database itself
    (``INSERT ... SELECT`` over a series of integers), in the order they run. Every value is the
    function of the row's id that the Python functions above compute."""
    d = _Dialect(dialect)
    q = f"{schema}." if dialect != "sqlite" else ""
    t = d.types()
    out = [
        Step("table customers", f"CREATE TABLE {q}customers (id int PRIMARY KEY, name {t['text']} NOT NULL, "
                                f"region int NOT NULL, created_at {t['ts']} NOT NULL, version int NOT NULL DEFAULT 0)"),
        Step("table products", f"CREATE TABLE {q}products (id int PRIMARY KEY, name {t['text']} NOT NULL, "
                               f"category int NOT NULL, price {t['price']} NOT NULL)"),
        Step("table orders", f"CREATE TABLE {q}orders (id int PRIMARY KEY, customer_id int NOT NULL, "
                             f"created_at {t['ts']} NOT NULL, status {t['text']} NOT NULL, "
                             f"amount {t['money']} NOT NULL, "
                             f"version int NOT NULL DEFAULT 0)"),
        Step("table order_items", f"CREATE TABLE {q}order_items (id {t['item_id']}, order_id int NOT NULL, "
                                  f"product_id int NOT NULL, qty int NOT NULL, price {t['price']} NOT NULL)"),
    ]

    def chunks(label: str, total: int, select: Callable[[str], str], table: str) -> None:
        for lo in range(1, total + 1, CHUNK_ROWS):
            hi = min(total, lo + CHUNK_ROWS - 1)
            out.append(Step(f"{label} {hi:,} / {total:,}",
                            f"INSERT INTO {q}{table} {select(_numbers(dialect, lo, hi))}", hi - lo + 1))

    chunks("customers", scale.customers, lambda n: (
        f"SELECT g, {d.concat('customer ', 'g')}, g % {REGIONS}, {d.timestamp('2022-01-01', 'g % 700')}, 0 FROM {n}"),
        "customers")
    chunks("products", scale.products, lambda n: (
        f"SELECT g, {d.concat('product ', 'g')}, g % {CATEGORIES}, {_price_cents('g')} / 100.0 FROM {n}"),
        "products")
    def item_product(item: str) -> str:
        return f"1 + (({item}) * {ITEM_PRODUCT_MUL}) % {scale.products}"

    def item_cents(item: str) -> str:
        """An item's qty * price in cents."""
        return f"(1 + ({item}) % 5) * {_price_cents(item_product(item))}"

    # An order's amount: the sum of its items' (3g-2 .. 3g), spelled out item by item.
    amount = " + ".join(item_cents(f"{ITEMS_PER_ORDER} * g - {k}") for k in range(ITEMS_PER_ORDER - 1, -1, -1))
    status = " ".join(f"WHEN {k} THEN '{STATUSES[k]}'" for k in range(4))
    chunks("orders", scale.orders, lambda n: (
        f"SELECT g, 1 + (g * {ORDER_CUSTOMER_MUL}) % {scale.customers}, "
        f"{d.timestamp(BASE_DATE.isoformat(), f'(g * {ORDER_DAY_MUL}) % {DAYS}', 'g % 86400')}, "
        f"CASE g % 4 {status} END, ({amount}) / 100.0, 0 FROM {n}"), "orders")
    chunks("order_items", scale.items, lambda n: (
        f"(id, order_id, product_id, qty, price) SELECT g, {d.div('g - 1', ITEMS_PER_ORDER)} + 1, "
        f"{item_product('g')}, 1 + g % 5, {_price_cents(item_product('g'))} / 100.0 "
        f"FROM {n}"), "order_items")
    if dialect == "postgres":  # the identity continues after the generated ids (the others do it themselves)
        out.append(Step("order_items identity",
                        f"SELECT setval(pg_get_serial_sequence('{q}order_items', 'id'), {scale.items})"))
    for name, table, columns in (("orders_customer_created", "orders", "customer_id, created_at"),
                                 ("orders_created", "orders", "created_at"),
                                 ("order_items_order", "order_items", "order_id"),
                                 ("order_items_product", "order_items", "product_id")):
        out.append(Step(f"index {table}({columns})", f"CREATE INDEX {name} ON {q}{table} ({columns})"))
    tables = ", ".join(f"{q}{t}" for t in ("customers", "products", "orders", "order_items"))
    analyze = {"postgres": f"VACUUM ANALYZE {tables}", "mariadb": f"ANALYZE TABLE {tables}", "sqlite": "ANALYZE"}
    out.append(Step("statistics", analyze[dialect]))
    return out


def create(execute: Callable[[str], Any], dialect: str, schema: str, scale: Scale,
           progress: Callable[[Step, float], None]) -> None:
    """Create and fill ``schema`` (created empty by the engine) with ``execute``; ``progress`` is told
    of each step once it has run, with its duration in seconds."""
    for step in steps(dialect, schema, scale):
        t0 = time.monotonic()
        execute(step.sql)
        progress(step, time.monotonic() - t0)
