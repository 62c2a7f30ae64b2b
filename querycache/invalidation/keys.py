"""Version keys: the names entries depend on and writers bump (docs/freshness.md, "The clock").

``<database>\\x1f<table>`` for a table (``*`` standing for the whole database), the table key
plus ``\\x1d*`` for its "any row" bucket and ``\\x1dcolumn=bucket`` for a row-level bucket
(docs/freshness.md, "Row-level invalidation"), ``<namespace>\\x1fgroup\\x1f<name>`` for an
application group. Every key is built here.
"""

from __future__ import annotations

SEPARATOR = "\x1f"
BUCKET = "\x1d"


def version_prefix(database: str) -> str:
    """What every table key of ``database`` starts with."""
    return database + SEPARATOR


def table_key(prefix: str, table: str) -> str:
    return prefix + table


def database_table_key(database: str, table: str) -> str:
    return database + SEPARATOR + table


def any_rows_key(table_key: str) -> str:
    """The bucket every row-level write to the table bumps, read by reads that pin no rows of it."""
    return table_key + BUCKET + "*"


def bucket_key(table_key: str, column: str, bucket: str) -> str:
    return f"{table_key}{BUCKET}{column}={bucket}"


def group_key(namespace: str, name: str) -> str:
    return f"{namespace}{SEPARATOR}group{SEPARATOR}{name}"


def table_of(key: str) -> str:
    """The table a version key belongs to (its buckets included)."""
    return key.rsplit(SEPARATOR, 1)[-1].split(BUCKET, 1)[0]


def is_bucket(key: str) -> bool:
    return BUCKET in key
