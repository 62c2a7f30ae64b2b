"""The embedded memory store: the conformance suite plus its own bounds and thread safety."""

from __future__ import annotations

import threading
import uuid

from querycache.backends.base import MISS, backend_class
from querycache.backends.memory import MemoryBackend
from tests.backends.conformance import BackendConformance

T = "db\x1forders"
TTL = 60.0


class TestMemoryConformance(BackendConformance):
    def make_backend(self) -> MemoryBackend:
        return MemoryBackend()


def fill(backend: MemoryBackend, key: str, value: bytes, version_keys: tuple[str, ...] = (T,)) -> bool:
    found = backend.lookup(key, list(version_keys))
    return backend.fill(key, value, list(version_keys), found.stamp, found.epoch, TTL)


def entry_size(value_len: int, key: str) -> int:
    """What one entry of this shape costs the store, measured on a store of its own."""
    probe = MemoryBackend()
    assert fill(probe, key, b"x" * value_len)
    return probe.size_bytes


def test_registered_as_memory() -> None:
    assert backend_class("memory") is MemoryBackend


def test_stores_of_one_process_share_the_clock() -> None:
    """Two caches over one database must invalidate each other (API.md): entries are per store,
    versions per process."""
    a, b = MemoryBackend(), MemoryBackend()
    assert a.epoch == b.epoch
    key, t = "qc-test:e:" + uuid.uuid4().hex, "db\x1f" + uuid.uuid4().hex
    found = b.lookup(key, [t])
    assert b.fill(key, b"v", [t], found.stamp, found.epoch, TTL)
    assert b.lookup(key, [t]).value == b"v"
    assert a.lookup(key, [t]).value is MISS  # entries are not shared
    token = uuid.uuid4().hex
    a.begin_write([t], token, 1000)
    a.end_write([t], token)
    assert b.lookup(key, [t]).value is MISS  # a write through one store invalidates the other


def test_a_private_clock_is_a_separate_incarnation() -> None:
    from querycache.backends.memory import ProcessClock

    assert MemoryBackend(clock=ProcessClock()).epoch != MemoryBackend().epoch


def test_versions_mapping_is_the_process_mirror() -> None:
    backend = MemoryBackend()
    backend.lookup(None, [T])
    token = uuid.uuid4().hex
    backend.begin_write([T], token, 30000)
    s = backend.end_write([T], token)
    assert backend.mirror_versions[T] == s
    assert backend.lookup(None, [T]).versions[T] == s


def test_size_accounting() -> None:
    backend = MemoryBackend()
    per_entry = entry_size(100, "k00")
    assert per_entry >= 100
    assert fill(backend, "k00", b"x" * 100)
    assert fill(backend, "k01", b"x" * 100)
    assert backend.size_bytes == 2 * per_entry
    assert len(backend) == 2
    assert fill(backend, "k00", b"y" * 100)  # replacing does not double count
    assert backend.size_bytes == 2 * per_entry
    backend.delete("k00")
    assert backend.size_bytes == per_entry
    backend.flush()
    assert backend.size_bytes == 0
    assert len(backend) == 0


def test_bounded_by_max_bytes_with_lru_eviction() -> None:
    per_entry = entry_size(300, "k00")  # keys k00.., values key * 100
    capacity = 4
    backend = MemoryBackend(max_bytes=capacity * per_entry + per_entry // 2)
    keys = [f"k{i:02d}" for i in range(capacity + 2)]
    for key in keys[:capacity]:
        assert fill(backend, key, key.encode() * 100)
    assert len(backend) == capacity
    assert backend.evictions == 0
    # k00 is read, so k01 is now the least recently used
    assert backend.lookup("k00", [T]).value == b"k00" * 100
    assert fill(backend, keys[capacity], keys[capacity].encode() * 100)
    assert len(backend) == capacity
    assert backend.evictions == 1
    assert backend.size_bytes <= backend.max_bytes
    assert backend.lookup("k01", [T]).value is MISS, "the least recently used entry goes first"
    for key in ("k02", "k03", keys[capacity], "k00"):
        assert backend.lookup(key, [T]).value == key.encode() * 100, key
    # next in line: k02, read before k03, k04 and k00
    assert fill(backend, keys[capacity + 1], b"z" * 300)
    assert backend.lookup("k02", [T]).value is MISS
    assert backend.lookup("k00", [T]).value == b"k00" * 100
    assert backend.evictions == 2
    assert backend.size_bytes <= backend.max_bytes


def test_many_fills_stay_within_max_bytes() -> None:
    backend = MemoryBackend(max_bytes=10_000)
    for i in range(500):
        fill(backend, f"key-{i:04d}", bytes([i % 256]) * (i % 300 + 1))
        assert backend.size_bytes <= backend.max_bytes
    assert 0 < len(backend) < 500
    # the newest entry is always kept
    assert backend.lookup("key-0499", [T]).value == bytes([499 % 256]) * (499 % 300 + 1)


def test_value_larger_than_max_bytes_is_refused() -> None:
    backend = MemoryBackend(max_bytes=2000)
    assert fill(backend, "small", b"s" * 10)
    assert fill(backend, "huge", b"h" * 5000) is False
    assert backend.lookup("huge", [T]).value is MISS
    # refusing it did not evict what was there
    assert backend.lookup("small", [T]).value == b"s" * 10
    assert backend.evictions == 0
    assert backend.size_bytes <= backend.max_bytes


def test_non_positive_ttl_is_refused() -> None:
    backend = MemoryBackend()
    found = backend.lookup("k", [T])
    assert backend.fill("k", b"v", [T], found.stamp, found.epoch, 0) is False
    assert backend.fill("k", b"v", [T], found.stamp, found.epoch, -1) is False
    assert len(backend) == 0


def test_thread_safety_smoke() -> None:
    keys = [f"k{i:02d}" for i in range(24)]
    value_of = {key: (key * 40).encode() for key in keys}  # same length for every key
    per_entry = entry_size(len(value_of[keys[0]]), keys[0])
    backend = MemoryBackend(max_bytes=per_entry * 10)  # room for 10 of 24: eviction under contention
    tables = ["db\x1fa", "db\x1fb"]
    errors: list[str] = []
    ticks: list[int] = []
    ticks_lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        mine: list[int] = []
        last_stamp = -1
        start.wait()
        try:
            for i in range(600):
                key = keys[(n * 7 + i) % len(keys)]
                deps = [tables[i % 2]]
                found = backend.lookup(key, deps)
                if found.stamp < last_stamp:
                    errors.append(f"stamp went back: {found.stamp} < {last_stamp}")
                last_stamp = found.stamp
                if found.value is not MISS and found.value != value_of[key]:
                    errors.append(f"{key} returned {found.value[:10]!r}")
                if found.value is MISS:
                    backend.fill(key, value_of[key], deps, found.stamp, found.epoch, TTL)
                if n % 4 == 0 and i % 50 == 0:
                    token = uuid.uuid4().hex
                    p = backend.begin_write(deps, token, 30000)
                    s = backend.end_write(deps, token)
                    if not s > p:
                        errors.append(f"end tick {s} not after begin tick {p}")
                    mine.extend((p, s))
                if backend.size_bytes > backend.max_bytes:
                    errors.append(f"size {backend.size_bytes} over {backend.max_bytes}")
        except Exception as exc:  # noqa: BLE001 - any exception in a worker is a failure
            errors.append(repr(exc))
        with ticks_lock:
            ticks.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert ticks and len(ticks) == len(set(ticks)), "two writers got the same tick"
    assert backend.size_bytes <= backend.max_bytes
    assert 0 < len(backend) <= 10
    assert backend.size_bytes == len(backend) * per_entry, "byte accounting drifted under concurrency"
    assert backend.evictions > 0
    # every surviving entry is intact, and a write on every table makes all of them stale
    for key in keys:
        for deps in ([tables[0]], [tables[1]]):
            value = backend.lookup(key, deps).value
            assert value is MISS or value == value_of[key]
    token = uuid.uuid4().hex
    backend.begin_write(tables, token, 30000)
    backend.end_write(tables, token)
    for key in keys:
        for deps in ([tables[0]], [tables[1]]):
            assert backend.lookup(key, deps).value is MISS
    assert backend.lookup(None, tables).pending is False


def test_cache_stats_show_its_entries_bytes_and_evictions() -> None:
    import sqlite3

    import querycache

    cache = querycache.QueryCache.from_dict({"l2": {"max_bytes": 3000}})
    conn = cache.wrap(sqlite3.connect(":memory:", isolation_level=None))
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    conn.execute("INSERT INTO t VALUES (1, ?)", ("x" * 400,))
    for i in range(12):
        conn.execute("SELECT b FROM t WHERE a = ? OR ? = 0", (1, i)).fetchall()
    backend = cache.backend
    assert isinstance(backend, MemoryBackend) and backend.evictions > 0
    stats = cache.stats()
    assert stats.entries["l2"] == len(backend) > 0
    assert stats.bytes["l2"] == backend.size_bytes > 0
    assert stats.evictions["l2"] == backend.evictions
    cache.close()
