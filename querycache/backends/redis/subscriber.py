"""The subscriber of the Redis store: this process's version mirror and its coherence lease.

A thread per backend applies bumps to the mirror in message order (a gap, a reconnect or a new
epoch empties the mirror, which makes every L1 entry stale) and acknowledges them. It renews
this process's lease only after a PING on the subscription came back, i.e. after every earlier
bump was applied (docs/freshness.md, "Leases").
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable

import redis
from querycache.backends.redis.scripts import CLOCK, HOLDERS
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

log = logging.getLogger("querycache")


class FillWaiter:
    __slots__ = ("event", "reason")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None


class Subscription:
    """The subscriber half of ``RedisBackend``: the state it shares with the backend is declared here."""

    url: str
    timeout_s: float
    lease_ms: int
    holder: str
    channel: str
    fills_channel: str
    versions: dict[str, int]
    _scripts: dict[str, Any]
    _lock: threading.RLock
    _stop: threading.Event
    _subscriber: threading.Thread | None
    _undelivered: set[str]
    _held: dict[str, tuple[str, int]]
    _fill_waiters: dict[str, FillWaiter]
    _on_resync: list[Callable[[], object]]
    _epoch: str
    _epoch_seq: int
    _generation: int
    _l1_token: str
    _lease_until: float
    _last_msg: int
    _ack_prefix: str

    @property
    def resyncs(self) -> int:
        """How many times this process's mirror was emptied (a gap, a reconnect, a new epoch);
        every L1 entry filled before one is stale."""
        return self._generation

    @property
    def has_lease(self) -> bool:
        """Whether L1 may answer now: this process holds an unexpired coherence lease and every
        write it made was announced (``l1_epoch`` is the store's epoch only then)."""
        return time.monotonic() < self._lease_until and not self._undelivered

    def _deliver_pending(self) -> None:
        raise NotImplementedError  # the backend's: it publishes the writes an outage kept back

    def _new_epoch(self) -> str:
        raise NotImplementedError  # the backend's

    def _advance(self, versions: Iterable[tuple[str, int]]) -> None:
        raise NotImplementedError  # the backend's

    def _see_epoch(self, epoch: str, seq: int) -> bool:
        """Follow the store to a new incarnation; False for an answer from an older one.

        Epochs are random ids; their order comes from the clock: a new incarnation's counter
        starts at the store's time, above every stamp of the one before. An observation made
        before a FLUSHALL may arrive after the new epoch was seen, and must not switch back.
        """
        with self._lock:
            if epoch == self._epoch:
                self._epoch_seq = max(self._epoch_seq, seq)
                return True
            if self._epoch and seq <= self._epoch_seq:
                return False
            if self._epoch:
                self._resync()
            self._epoch = epoch
            self._epoch_seq = seq
            self._l1_token = f"{epoch}#{self._generation}"
            return True

    def _resync(self) -> None:
        self._generation += 1
        self._l1_token = f"{self._epoch}#{self._generation}"
        self.versions.clear()
        self._last_msg = -1
        for callback in list(self._on_resync):
            try:
                callback()
            except Exception:
                log.exception("querycache: resync callback failed")

    def _start_subscriber(self) -> None:
        self._subscriber = threading.Thread(target=self._subscribe_loop, name="querycache-redis-subscriber",
                                            daemon=True)
        self._subscriber.start()

    def _subscribe_loop(self) -> None:
        renew_every = self.lease_ms / 3000
        margin = min(0.1, self.lease_ms / 5000)
        while not self._stop.is_set():
            pubsub = None
            try:
                # No transparent retries: a reconnect must be visible here, since messages
                # published while disconnected are lost and the mirror must be rebuilt.
                client = redis.Redis.from_url(self.url, socket_timeout=max(1.0, self.lease_ms / 1000),
                                              socket_connect_timeout=self.timeout_s,
                                              retry=Retry(NoBackoff(), 0), retry_on_error=[])
                pubsub = client.pubsub()
                pubsub.subscribe(self.channel, self.fills_channel)
                self._resync()  # messages may have been missed before this subscription
                if self._undelivered:
                    self._deliver_pending()  # the store is back: announce the outage's writes now
                seq_text, epoch, msg_text = self._scripts["stamp"](keys=[CLOCK], args=[self._new_epoch(), 0],
                                                                   client=client)
                self._see_epoch(epoch.decode() if isinstance(epoch, bytes) else epoch, int(seq_text))
                self._last_msg = int(msg_text)
                ping_sent = 0.0
                awaiting_pong = False
                published_before_ping = -1
                published_epoch = self._epoch
                published_seq = 0
                while not self._stop.is_set():
                    now = time.monotonic()
                    if not awaiting_pong and now - ping_sent >= renew_every:
                        ping_sent = now
                        if self._undelivered:
                            self._deliver_pending()
                        # What had been published before the PING: the PONG proves it all arrived.
                        seq_text, epoch, msg_text = self._scripts["stamp"](
                            keys=[CLOCK], args=[self._new_epoch(), 0], client=client)
                        published_epoch = epoch.decode() if isinstance(epoch, bytes) else epoch
                        published_seq = int(seq_text)
                        published_before_ping = int(msg_text)
                        pubsub.ping()
                        awaiting_pong = True
                    message = pubsub.get_message(timeout=renew_every)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "message":
                        if message["channel"] in (self.fills_channel, self.fills_channel.encode()):
                            self._woken(message["data"])
                        else:
                            self._apply(message["data"], client)
                    elif kind == "pong" and awaiting_pong:
                        awaiting_pong = False
                        switched = published_epoch != self._epoch
                        if switched and not self._see_epoch(published_epoch, published_seq):
                            continue  # an older incarnation's answer: no lease this round
                        if switched or self._last_msg < published_before_ping:
                            # A new incarnation, or bumps that never arrived: rebuild, no lease yet.
                            self._resync()
                            self._last_msg = published_before_ping
                            self._lease_until = 0.0
                            continue
                        if self._held:
                            # This process's coalescing leaders still run: keep their leases.
                            held = dict(self._held)
                            self._scripts["extend"](keys=list(held),
                                                    args=[max(ms for _, ms in held.values()),
                                                          *(token for token, _ in held.values())],
                                                    client=client)
                        # Every bump published before the PING has been applied: renew the lease.
                        self._scripts["renew"](keys=[CLOCK, HOLDERS],
                                               args=[self._new_epoch(), 0, self.holder, self.lease_ms],
                                               client=client)
                        self._lease_until = ping_sent + self.lease_ms / 1000 - margin
            except (RedisError, OSError, ValueError) as exc:
                self._lease_until = 0.0
                log.debug("querycache: redis subscriber reconnecting after %s", exc)
                self._stop.wait(0.05)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (RedisError, OSError):
                        pass
        self._lease_until = 0.0

    def _woken(self, data: bytes) -> None:
        key, _, reason = data.decode("utf-8", "surrogatepass").partition("\x1f")
        with self._lock:
            waiter = self._fill_waiters.get(key)
        if waiter is not None:
            waiter.reason = reason
            waiter.event.set()

    def _apply(self, data: bytes, client: Any) -> None:
        epoch, msg_text, seq_text, names = data.decode("utf-8", "surrogatepass").split("\x1f", 3)
        msg, seq = int(msg_text), int(seq_text)
        if epoch != self._epoch:
            # Trust the store, not the message: only the clock it holds now may switch this
            # process to another incarnation (a stray message cannot pin it to a foreign epoch).
            seq_text, store_epoch, _ = self._scripts["stamp"](keys=[CLOCK], args=[self._new_epoch(), 0],
                                                              client=client)
            store_epoch = store_epoch.decode() if isinstance(store_epoch, bytes) else store_epoch
            switched = store_epoch != self._epoch and self._see_epoch(store_epoch, int(seq_text))
            if switched:
                self._lease_until = 0.0
            if epoch != store_epoch:
                return  # an older incarnation's (or a foreign) message: the resync covered it
        elif self._last_msg >= 0 and msg > self._last_msg + 1:
            self._resync()  # a gap: something was missed; forget everything
            self._lease_until = 0.0
        # Applying a bump twice is harmless (versions only grow), so earlier numbers are applied too.
        self._advance((k, seq) for k in names.split("\x1e") if names)
        self._last_msg = max(self._last_msg, msg)
        # Acknowledgements are per incarnation: message numbers restart with a new epoch.
        client.set(f"{self._ack_prefix}{self._epoch}:{self.holder}", msg, px=max(60000, self.lease_ms * 10))
