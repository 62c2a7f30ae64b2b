"""The contract every L2 store passes (``querycache/backends/base.py``, docs/freshness.md).

A test module per store subclasses ``BackendConformance`` in a ``Test...`` class and
implements ``make_backend``. Every test uses its own entry keys and version keys, so
a shared store (Redis) can run the suite without flushing between tests.
"""

from __future__ import annotations

import time
import uuid
from typing import Iterator

import pytest

from querycache.backends.base import MISS, Backend, Lookup

TTL = 60.0
MARK_TTL_MS = 30000


class BackendConformance:
    """Mixin: subclass it in a ``Test...`` class and return a fresh store from ``make_backend``."""

    def make_backend(self) -> Backend:
        raise NotImplementedError

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        store = self.make_backend()
        try:
            yield store
        finally:
            store.close()

    @pytest.fixture
    def ns(self) -> str:
        """A prefix unique to the test, for entry and version keys."""
        return uuid.uuid4().hex[:12]

    # -- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def table(ns: str, name: str) -> str:
        return f"db-{ns}\x1f{name}"

    @staticmethod
    def group(ns: str, name: str) -> str:
        return f"group\x1f{ns}-{name}"

    @staticmethod
    def entry(ns: str, name: str = "e") -> str:
        return f"qc-test:e:{ns}:{name}"

    @staticmethod
    def write(backend: Backend, version_keys: list[str]) -> tuple[int, int]:
        token = uuid.uuid4().hex
        p = backend.begin_write(version_keys, token, MARK_TTL_MS)
        s = backend.end_write(version_keys, token)
        return p, s

    @staticmethod
    def fill_fresh(backend: Backend, key: str, value: bytes, version_keys: list[str], ttl_s: float = TTL) -> Lookup:
        """Look up (which also creates missing versions), then fill with that lookup's stamp."""
        found = backend.lookup(key, version_keys)
        assert backend.fill(key, value, version_keys, found.stamp, found.epoch, ttl_s) is True
        return found

    # -- lookup ---------------------------------------------------------------------------------------
    def test_miss_sentinel(self) -> None:
        assert not MISS
        assert repr(MISS) == "MISS"
        assert type(MISS)() is MISS

    def test_lookup_of_missing_key_returns_miss_stamp_and_epoch(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        found = backend.lookup(self.entry(ns), [t])
        assert found.value is MISS
        assert isinstance(found.stamp, int)
        assert found.epoch == backend.epoch
        assert isinstance(found.epoch, str) and found.epoch
        epoch, seq = backend.current_stamp()
        assert found.epoch == epoch
        assert found.stamp == seq
        assert found.pending is False

    def test_lookup_without_an_entry_key_reads_versions_only(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        found = backend.lookup(None, [t])
        assert found.value is MISS
        assert set(found.versions) == {t}

    def test_lookup_creates_missing_versions_at_the_current_seq(self, backend: Backend, ns: str) -> None:
        t, u = self.table(ns, "orders"), self.table(ns, "items")
        first = backend.lookup(self.entry(ns), [t, u])
        assert set(first.versions) == {t, u}
        assert first.versions[t] == first.stamp
        assert first.versions[u] == first.stamp
        # the clock moves on elsewhere; the created versions stay where they were created
        self.write(backend, [self.table(ns, "unrelated")])
        again = backend.lookup(self.entry(ns), [t, u])
        assert again.stamp > first.stamp
        assert again.versions == first.versions

    def test_lookup_reports_only_the_requested_versions(self, backend: Backend, ns: str) -> None:
        t, u = self.table(ns, "orders"), self.table(ns, "items")
        backend.lookup(None, [t, u])
        assert set(backend.lookup(None, [u]).versions) == {u}

    def test_fill_refused_for_a_version_that_does_not_exist(self, backend: Backend, ns: str) -> None:
        # docs/freshness.md, "The clock": a missing ver(t) counts as changed.
        t = self.table(ns, "never-looked-up")
        epoch, seq = backend.current_stamp()
        assert backend.fill(self.entry(ns), b"v", [t], seq, epoch, TTL) is False
        assert backend.lookup(self.entry(ns), [t]).value is MISS

    # -- fill and hit ----------------------------------------------------------------------------------
    def test_fill_then_lookup_returns_the_bytes(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        key = self.entry(ns)
        value = b"\x00\x01binary\xff" * 100
        self.fill_fresh(backend, key, value, [t])
        found = backend.lookup(key, [t])
        assert found.value == value
        assert type(found.value) is bytes
        assert found.pending is False
        # a hit is repeatable
        assert backend.lookup(key, [t]).value == value

    def test_fill_takes_the_state_argument(self, backend: Backend, ns: str) -> None:
        """The read path passes ``state`` to every store (None unless it keeps maintained answers)."""
        t = self.table(ns, "orders")
        key = self.entry(ns)
        found = backend.lookup(key, [t])  # creates the version
        assert backend.fill(key, b"v", [t], found.stamp, found.epoch, TTL, 0.0, None) is True
        assert backend.lookup(key, [t]).value == b"v"

    def test_entries_are_independent(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        a, b = self.entry(ns, "a"), self.entry(ns, "b")
        self.fill_fresh(backend, a, b"A", [t])
        assert backend.lookup(b, [t]).value is MISS
        self.fill_fresh(backend, b, b"B", [t])
        assert backend.lookup(a, [t]).value == b"A"
        assert backend.lookup(b, [t]).value == b"B"

    def test_fill_replaces_an_entry(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        key = self.entry(ns)
        self.fill_fresh(backend, key, b"old", [t])
        self.fill_fresh(backend, key, b"new", [t])
        assert backend.lookup(key, [t]).value == b"new"

    def test_fill_refused_when_a_version_moved_past_the_stamp(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        key = self.entry(ns)
        before = backend.lookup(key, [t])
        self.write(backend, [t])
        assert backend.fill(key, b"stale", [t], before.stamp, before.epoch, TTL) is False
        assert backend.lookup(key, [t]).value is MISS

    def test_fill_accepted_when_only_an_unrelated_version_moved(self, backend: Backend, ns: str) -> None:
        t, u = self.table(ns, "orders"), self.table(ns, "items")
        key = self.entry(ns)
        before = backend.lookup(key, [t])
        backend.lookup(None, [u])
        self.write(backend, [u])
        assert backend.fill(key, b"v", [t], before.stamp, before.epoch, TTL) is True
        assert backend.lookup(key, [t]).value == b"v"

    def test_fill_refused_when_any_of_several_versions_moved(self, backend: Backend, ns: str) -> None:
        t, u = self.table(ns, "orders"), self.table(ns, "items")
        key = self.entry(ns)
        before = backend.lookup(key, [t, u])
        self.write(backend, [u])
        assert backend.fill(key, b"stale", [t, u], before.stamp, before.epoch, TTL) is False

    def test_fill_refused_for_another_epoch(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        key = self.entry(ns)
        found = backend.lookup(key, [t])
        assert backend.fill(key, b"v", [t], found.stamp, "other-" + found.epoch, TTL) is False
        assert backend.lookup(key, [t]).value is MISS
        # the same fill with the store's own epoch is accepted
        assert backend.fill(key, b"v", [t], found.stamp, found.epoch, TTL) is True

    # -- two-phase writes ----------------------------------------------------------------------------
    def test_fill_refused_while_a_pending_mark_is_on_a_dependency(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        key = self.entry(ns)
        backend.lookup(None, [t])
        token = uuid.uuid4().hex
        backend.begin_write([t], token, MARK_TTL_MS)
        during = backend.lookup(key, [t])
        # the stamp is not behind the version: only the pending mark can refuse this fill
        assert during.versions[t] <= during.stamp
        assert backend.fill(key, b"v", [t], during.stamp, during.epoch, TTL) is False
        assert backend.lookup(key, [t]).value is MISS
        backend.end_write([t], token)
        after = backend.lookup(key, [t])
        assert after.pending is False
        assert backend.fill(key, b"v", [t], after.stamp, after.epoch, TTL) is True
        assert backend.lookup(key, [t]).value == b"v"

    def test_lookup_is_miss_and_pending_between_the_phases(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        key = self.entry(ns)
        self.fill_fresh(backend, key, b"v", [t])
        assert backend.lookup(key, [t]).value == b"v"
        token = uuid.uuid4().hex
        p = backend.begin_write([t], token, MARK_TTL_MS)
        during = backend.lookup(key, [t])
        assert during.value is MISS
        assert during.pending is True
        assert during.versions[t] == p
        s = backend.end_write([t], token)
        after = backend.lookup(key, [t])
        assert after.pending is False
        assert after.versions[t] == s
        assert s > p

    def test_entry_filled_before_a_write_is_miss_after_end_write(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        key = self.entry(ns)
        self.fill_fresh(backend, key, b"v", [t])
        self.write(backend, [t])
        found = backend.lookup(key, [t])
        assert found.value is MISS
        assert found.pending is False

    def test_entry_filled_by_a_reader_that_started_during_the_write_is_refused(self, backend: Backend,
                                                                                 ns: str) -> None:
        # the reader's stamp is taken after phase 1, its fill comes after phase 2
        t = self.table(ns, "orders")
        key = self.entry(ns)
        backend.lookup(None, [t])
        token = uuid.uuid4().hex
        backend.begin_write([t], token, MARK_TTL_MS)
        reader = backend.lookup(key, [t])
        backend.end_write([t], token)
        assert backend.fill(key, b"maybe-old", [t], reader.stamp, reader.epoch, TTL) is False

    def test_pending_mark_on_another_table_does_not_matter(self, backend: Backend, ns: str) -> None:
        t, u = self.table(ns, "orders"), self.table(ns, "items")
        key = self.entry(ns)
        self.fill_fresh(backend, key, b"v", [t])
        backend.lookup(None, [u])
        token = uuid.uuid4().hex
        backend.begin_write([u], token, MARK_TTL_MS)
        found = backend.lookup(key, [t])
        assert found.value == b"v"
        assert found.pending is False
        backend.end_write([u], token)

    def test_pending_marks_are_per_writer(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        key = self.entry(ns)
        backend.lookup(None, [t])
        a, b = uuid.uuid4().hex, uuid.uuid4().hex
        backend.begin_write([t], a, MARK_TTL_MS)
        backend.begin_write([t], b, MARK_TTL_MS)
        backend.end_write([t], a)
        still = backend.lookup(key, [t])
        assert still.pending is True
        assert backend.fill(key, b"v", [t], still.stamp, still.epoch, TTL) is False
        backend.end_write([t], b)
        done = backend.lookup(key, [t])
        assert done.pending is False
        assert backend.fill(key, b"v", [t], done.stamp, done.epoch, TTL) is True

    def test_pending_marks_expire_after_mark_ttl(self, backend: Backend, ns: str) -> None:
        # A writer that died between the phases: its mark expires, its phase-1 version stays.
        t = self.table(ns, "orders")
        key = self.entry(ns)
        self.fill_fresh(backend, key, b"before-write", [t])
        backend.begin_write([t], uuid.uuid4().hex, 50)
        assert backend.lookup(key, [t]).pending is True
        time.sleep(0.2)
        found = backend.lookup(key, [t])
        assert found.pending is False
        assert found.value is MISS, "the phase-1 version must still invalidate the older entry"
        assert backend.fill(key, b"after", [t], found.stamp, found.epoch, TTL) is True
        assert backend.lookup(key, [t]).value == b"after"

    # -- transactions -------------------------------------------------------------------------------------
    def test_tx_stamp_below_a_version_makes_a_valid_entry_miss(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        key = self.entry(ns)
        tx = backend.lookup(None, [t])  # S_tx taken at the start of a transaction
        self.write(backend, [t])  # another connection commits
        fresh = self.fill_fresh(backend, key, b"new", [t])
        assert backend.lookup(key, [t]).value == b"new"
        assert backend.lookup(key, [t], tx_stamp=tx.stamp).value is MISS
        assert backend.lookup(key, [t], tx_stamp=fresh.stamp).value == b"new"

    def test_tx_stamp_above_the_versions_still_hits(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        key = self.entry(ns)
        self.fill_fresh(backend, key, b"v", [t])
        self.write(backend, [self.table(ns, "unrelated")])
        _, later = backend.current_stamp()
        assert backend.lookup(key, [t], tx_stamp=later).value == b"v"

    # -- TTL ---------------------------------------------------------------------------------------------
    def test_entry_expires_after_its_ttl(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        short, long = self.entry(ns, "short"), self.entry(ns, "long")
        self.fill_fresh(backend, short, b"s", [t], ttl_s=0.05)
        self.fill_fresh(backend, long, b"l", [t], ttl_s=TTL)
        assert backend.lookup(short, [t]).value == b"s"
        time.sleep(0.2)
        assert backend.lookup(short, [t]).value is MISS
        assert backend.lookup(long, [t]).value == b"l"

    # -- the clock ------------------------------------------------------------------------------------------
    def test_stamps_never_go_backwards(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        backend.lookup(None, [t])
        epoch = backend.epoch
        last = backend.current_stamp()[1]
        for _ in range(300):
            wall_us = time.time_ns() // 1000
            token = uuid.uuid4().hex
            p = backend.begin_write([t], token, MARK_TTL_MS)
            s = backend.end_write([t], token)
            assert p > last
            assert s > p
            assert p >= wall_us, "seq = max(seq + 1, store time in µs)"
            assert backend.current_stamp() == (epoch, s)
            found = backend.lookup(None, [t])
            assert found.stamp == s
            assert found.versions[t] == s
            last = s
        assert backend.epoch == epoch

    def test_current_stamp_has_no_side_effects(self, backend: Backend, ns: str) -> None:
        backend.lookup(None, [self.table(ns, "orders")])
        first = backend.current_stamp()
        assert backend.current_stamp() == first
        assert backend.current_stamp() == first

    def test_lookup_does_not_advance_the_clock(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        backend.lookup(None, [t])
        before = backend.current_stamp()
        backend.lookup(self.entry(ns), [t, self.table(ns, "new-one")])
        assert backend.current_stamp() == before

    # -- flush and delete ----------------------------------------------------------------------------------
    def test_flush_drops_entries_but_not_versions(self, backend: Backend, ns: str) -> None:
        t, u = self.table(ns, "orders"), self.table(ns, "items")
        a, b = self.entry(ns, "a"), self.entry(ns, "b")
        old = backend.lookup(None, [t])
        self.write(backend, [t])
        self.fill_fresh(backend, a, b"A", [t])
        self.fill_fresh(backend, b, b"B", [u])
        versions = backend.lookup(None, [t, u]).versions
        stamp = backend.current_stamp()
        backend.flush()
        assert backend.lookup(a, [t]).value is MISS
        assert backend.lookup(b, [u]).value is MISS
        assert backend.lookup(None, [t, u]).versions == versions
        assert backend.current_stamp() == stamp
        # a stamp older than a write before the flush is still refused: the version survived
        assert backend.fill(a, b"stale", [t], old.stamp, old.epoch, TTL) is False
        # and the store still works
        self.fill_fresh(backend, a, b"A2", [t])
        assert backend.lookup(a, [t]).value == b"A2"

    def test_delete(self, backend: Backend, ns: str) -> None:
        t = self.table(ns, "orders")
        a, b = self.entry(ns, "a"), self.entry(ns, "b")
        self.fill_fresh(backend, a, b"A", [t])
        self.fill_fresh(backend, b, b"B", [t])
        backend.delete(a)
        assert backend.lookup(a, [t]).value is MISS
        assert backend.lookup(b, [t]).value == b"B"
        backend.delete(a)  # deleting a missing key is not an error
        backend.delete(self.entry(ns, "never-filled"))
        self.fill_fresh(backend, a, b"A2", [t])
        assert backend.lookup(a, [t]).value == b"A2"

    # -- groups ---------------------------------------------------------------------------------------------
    def test_group_version_keys_behave_like_tables(self, backend: Backend, ns: str) -> None:
        t, g = self.table(ns, "orders"), self.group(ns, "report-7")
        grouped, plain = self.entry(ns, "grouped"), self.entry(ns, "plain")
        self.fill_fresh(backend, grouped, b"G", [t, g])
        self.fill_fresh(backend, plain, b"P", [t])
        assert backend.lookup(grouped, [t, g]).value == b"G"
        # invalidating the group drops what depends on it, and only that
        self.write(backend, [g])
        assert backend.lookup(grouped, [t, g]).value is MISS
        assert backend.lookup(plain, [t]).value == b"P"
        # a table write still invalidates a grouped entry
        self.fill_fresh(backend, grouped, b"G2", [t, g])
        assert backend.lookup(grouped, [t, g]).value == b"G2"
        self.write(backend, [t])
        assert backend.lookup(grouped, [t, g]).value is MISS
        assert backend.lookup(plain, [t]).value is MISS

    def test_group_pending_mark_blocks_fill(self, backend: Backend, ns: str) -> None:
        t, g = self.table(ns, "orders"), self.group(ns, "report-7")
        key = self.entry(ns)
        backend.lookup(None, [t, g])
        token = uuid.uuid4().hex
        backend.begin_write([g], token, MARK_TTL_MS)
        during = backend.lookup(key, [t, g])
        assert during.pending is True
        assert backend.fill(key, b"v", [t, g], during.stamp, during.epoch, TTL) is False
        backend.end_write([g], token)
