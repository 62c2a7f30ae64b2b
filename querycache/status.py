"""The values ``cursor.cache_status`` takes, and why a statement was not served from cache."""

from __future__ import annotations

from enum import StrEnum


class BypassReason(StrEnum):
    """Why a statement ran on the database without consulting (or filling) the cache."""

    WRITE = "write"
    DDL = "ddl"
    UNKNOWN = "unknown"
    SESSION = "session"
    TX_DIRTY = "tx_dirty"
    TX_ISOLATION = "tx_isolation"
    TX_UNTRACKED = "tx_untracked"
    HINT_SKIP = "hint_skip"
    LOCKING = "locking"
    VOLATILE = "volatile"
    SELECT_INTO = "select_into"
    TEMP_TABLE = "temp_table"
    MULTI_STATEMENT = "multi_statement"
    CALLPROC = "callproc"
    REPLICA = "replica"
    STORE_UNAVAILABLE = "store_unavailable"
    DISABLED = "disabled"
    UNKNOWN_RELATION = "unknown_relation"
    PENDING_WRITE = "pending_write"
    SERVER_CURSOR = "server_cursor"
    # A table with row-level security whose policies call what the analyzer cannot see into (a user
    # function, a subquery): its settings must be declared (scope.policy_settings or a hint).
    RLS_OPAQUE = "rls_opaque"


class NotFilledReason(StrEnum):
    """Why a statement that ran on the database left nothing in the cache."""

    TOO_MANY_ROWS = "too_many_rows"
    TOO_MANY_BYTES = "too_many_bytes"
    UNENCODABLE = "unencodable"
    PENDING_WRITE = "pending_write"
    STALE_STAMP = "stale_stamp"
    NO_RESULT_SET = "no_result_set"
    ERROR = "error"
    UNTRACKED_TRANSACTION = "untracked_transaction"
    PRIVATE_SCOPE = "private_scope"
    # Row-level: a pinned column's registration is from another incarnation of the store (restart,
    # FLUSHALL): writers there may not know the column yet.
    DEPENDENCY_EPOCH = "dependency_epoch"


HIT_L1 = "hit:L1"
HIT_L2 = "hit:L2"
HIT_L3 = "hit:L3"
MISS = "miss"
COALESCED = "coalesced"


def bypass_status(reason: BypassReason) -> str:
    return f"bypass:{reason.value}"
