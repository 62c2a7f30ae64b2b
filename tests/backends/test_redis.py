"""The Redis store: the shared conformance suite, plus what only a shared, fallible store has."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pytest

from querycache.backends.base import MISS, backend_class
from querycache.errors import BackendUnavailable
from querycache.testing.redis_server import RedisServer
from tests.backends.conformance import BackendConformance
from tests.conftest import require

REDIS_URL = os.environ.get("QUERYCACHE_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _redis_up(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the service is absent
        require("Redis", exc)


def make(url: str = REDIS_URL, **kwargs: object):  # type: ignore[no-untyped-def]
    from querycache.backends.redis import RedisBackend

    return RedisBackend(url, namespace=kwargs.pop("namespace", "qc-test"), **kwargs)  # type: ignore[arg-type]


class TestRedisConformance(BackendConformance):
    def make_backend(self):  # type: ignore[no-untyped-def]
        _redis_up(REDIS_URL)
        return make(timeout_ms=2000)


def test_registered_as_redis() -> None:
    from querycache.backends.redis import RedisBackend

    assert backend_class("redis") is RedisBackend


def test_hmac_signed_entries_reject_tampering(own_redis: RedisServer) -> None:
    import redis

    backend = make(own_redis.url, hmac_secret="s3cret", timeout_ms=2000)
    t = "db\x1forders"
    key = "qc-test:e:" + uuid.uuid4().hex
    found = backend.lookup(key, [t])
    assert backend.fill(key, b"payload", [t], found.stamp, found.epoch, 60)
    assert backend.lookup(key, [t]).value == b"payload"
    client = redis.Redis(port=own_redis.port)
    raw = client.hget(key, "v")
    assert raw is not None and raw.endswith(b"payload") and len(raw) == 32 + len(b"payload")
    client.hset(key, "v", raw[:32] + b"forged!")
    assert backend.lookup(key, [t]).value is MISS
    unsigned = make(own_redis.url, timeout_ms=2000)
    assert unsigned.lookup(key, [t]).value == raw[:32] + b"forged!"  # without a secret: bytes as stored
    backend.close()
    unsigned.close()


def test_flushall_starts_a_new_epoch_and_old_stamps_are_refused(own_redis: RedisServer) -> None:
    import redis

    backend = make(own_redis.url, timeout_ms=2000)
    t = "db\x1forders"
    key = "qc-test:e:" + uuid.uuid4().hex
    old = backend.lookup(key, [t])
    resyncs = backend.resyncs
    redis.Redis(port=own_redis.port).flushall()
    # A fill carrying a stamp of the old incarnation must never be accepted.
    assert backend.fill(key, b"old", [t], old.stamp, old.epoch, 60) is False
    new = backend.lookup(key, [t])
    assert new.epoch != old.epoch
    assert new.stamp >= old.stamp, "the new counter starts at store time, above every old stamp"
    assert backend.resyncs > resyncs, "the mirror of the old incarnation was emptied"
    backend.close()


def test_restart_without_persistence_resets_safely(own_redis: RedisServer) -> None:
    backend = make(own_redis.url, timeout_ms=500)
    t = "db\x1forders"
    key = "qc-test:e:" + uuid.uuid4().hex
    before = backend.lookup(key, [t])
    token = uuid.uuid4().hex
    backend.begin_write([t], token, 1000)
    written = backend.end_write([t], token)
    own_redis.stop()
    own_redis.start()
    time.sleep(backend.breaker_cooldown_s + 0.1)
    after = backend.lookup(key, [t])
    assert after.epoch != before.epoch
    assert after.stamp > written
    assert backend.fill(key, b"x", [t], before.stamp, before.epoch, 60) is False
    backend.close()


def test_the_lease_is_lost_with_the_store(own_redis: RedisServer) -> None:
    backend = make(own_redis.url, timeout_ms=200)
    _leased(backend)
    assert not backend.l1_epoch.startswith("\x00no-lease")
    own_redis.stop()
    with pytest.raises(BackendUnavailable):
        backend.lookup(None, ["db\x1forders"])  # a failure ends the lease at once
    deadline = time.monotonic() + backend.lease_ms / 1000 + 0.5  # a renewal in flight: within a lease
    while backend.has_lease:
        assert time.monotonic() < deadline, "the lease outlived the store"
        time.sleep(0.01)
    assert backend.l1_epoch.startswith("\x00no-lease")
    backend.close()


def test_observed_scripts_are_the_ones_sent() -> None:
    _redis_up(REDIS_URL)
    backend = make(timeout_ms=2000)
    t = "db\x1forders"
    key = "qc-test:e:" + uuid.uuid4().hex
    sent: list[str] = []
    backend.observe_scripts(sent.append)
    found = backend.lookup(key, [t])
    assert backend.fill(key, b"v", [t], found.stamp, found.epoch, 60)
    backend.observe_scripts(None)
    backend.lookup(key, [t])
    assert sent == ["lookup", "fill"]
    backend.close()


def test_evicted_version_key_counts_as_changed(own_redis: RedisServer) -> None:
    import redis

    from querycache.backends.redis import _hashed

    backend = make(own_redis.url, timeout_ms=2000)
    t = "db\x1forders"
    key = "qc-test:e:" + uuid.uuid4().hex
    found = backend.lookup(key, [t])
    assert backend.fill(key, b"v", [t], found.stamp, found.epoch, 60)
    redis.Redis(port=own_redis.port).delete(_hashed("qc:v:", t))  # as maxmemory eviction would
    assert backend.lookup(key, [t]).value is MISS
    backend.close()


def test_dead_redis_fails_fast_behind_the_breaker(own_redis: RedisServer) -> None:
    backend = make(own_redis.url, timeout_ms=100)
    t = "db\x1forders"
    backend.lookup(None, [t])
    own_redis.stop()
    for _ in range(backend.breaker_failures):
        with pytest.raises(BackendUnavailable):
            backend.lookup(None, [t])
    assert backend.breaker_state == "open"
    for _ in range(100):
        # This message comes from the breaker itself: no connection was attempted.
        with pytest.raises(BackendUnavailable, match="circuit breaker is open"):
            backend.lookup(None, [t])
    own_redis.start()
    time.sleep(backend.breaker_cooldown_s + 0.05)
    assert backend.breaker_state == "half-open"
    backend.lookup(None, [t])
    assert backend.breaker_state == "closed"
    backend.close()


def test_undelivered_bump_is_retried_and_blocks_l1(own_redis: RedisServer) -> None:
    backend = make(own_redis.url, timeout_ms=100)
    t = "db\x1forders"
    backend.lookup(None, [t])
    own_redis.stop()
    with pytest.raises(BackendUnavailable):
        backend.end_write([t], uuid.uuid4().hex)
    assert backend.l1_epoch != backend._epoch
    own_redis.start()
    time.sleep(backend.breaker_cooldown_s + 0.05)
    before = backend.lookup(None, [t]).versions[t]
    assert not backend._undelivered
    assert backend.lookup(None, [t]).versions[t] >= before
    backend.close()


def _leased(backend: Any) -> None:
    deadline = time.monotonic() + 10
    while not backend.has_lease:
        assert time.monotonic() < deadline, "no L1 lease"
        time.sleep(0.02)


def test_other_database_and_stray_messages_leave_the_mirror_alone(own_redis: RedisServer) -> None:
    """Channels are server-wide: bumps of another logical database, or a message of an epoch the
    store does not hold, must neither reach this clock's mirror nor switch its epoch."""
    import redis

    base = own_redis.url.rsplit("/", 1)[0]
    backend = make(base + "/0", timeout_ms=2000)
    neighbour = make(base + "/1", timeout_ms=2000)
    t = "db\x1forders"
    backend.lookup(None, [t])
    _leased(backend)
    epoch, generation = backend.epoch, backend.resyncs  # the L1 token is "<epoch>#<resyncs>"
    for _ in range(5):
        token = uuid.uuid4().hex
        neighbour.begin_write([t], token, 1000)
        neighbour.end_write([t], token)
    redis.Redis(port=own_redis.port).publish(backend.channel, f"forged\x1f1\x1f{10**17}\x1f{t}")
    token = uuid.uuid4().hex
    backend.begin_write([t], token, 1000)
    seq = backend.end_write([t], token)
    backend.wait_for_acks()
    time.sleep(0.3)
    assert backend.epoch == epoch and backend.resyncs == generation
    assert backend.versions[t] == seq
    assert backend.l1_epoch == f"{epoch}#{generation}"
    backend.close()
    neighbour.close()


def test_script_flush_reloads_the_scripts(own_redis: RedisServer) -> None:
    import redis

    backend = make(own_redis.url, timeout_ms=2000)
    t = "db\x1forders"
    key = "qc-test:e:" + uuid.uuid4().hex
    found = backend.lookup(key, [t])
    redis.Redis(port=own_redis.port).script_flush()
    assert backend.fill(key, b"v", [t], found.stamp, found.epoch, 60)
    assert backend.lookup(key, [t]).value == b"v"
    assert backend.breaker_state == "closed"
    backend.close()
