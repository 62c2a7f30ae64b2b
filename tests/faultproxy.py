"""A TCP proxy whose behaviour a test switches while traffic flows: the network between the
app and its store, with the faults a real one has.

Modes (``proxy.set_mode(...)``), applied to existing and new connections alike:

- ``pass``: bytes flow both ways as they arrive.
- ``latency``: every chunk waits ``latency_ms`` before it is forwarded, in each direction.
- ``blackhole``: connections are accepted and kept open; nothing is forwarded either way
  (what a dropped route or a silent firewall looks like: the client sees only timeouts).
- ``reset``: every existing connection is closed with an RST (``SO_LINGER`` 0), and so is
  every new one as soon as it is accepted (a crashed middlebox, a restarted NAT).
- ``half_open``: requests still reach the server, replies never come back; sockets stay
  open (the server runs the command, the client cannot know it did).

Threads, plain sockets: one accept thread, one pump thread per connection pair. Nothing here
knows about Redis.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

MODES = ("pass", "latency", "blackhole", "reset", "half_open")


def _rst_close(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    """``127.0.0.1:<port>`` forwarding to ``target``; ``url`` is the Redis URL through it."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.latency_ms = 0.0
        self.accepted = 0
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        self._thread.start()

    # -- control ------------------------------------------------------------------------------
    def set_mode(self, mode: str, latency_ms: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: accepted are {', '.join(MODES)}")
        with self._lock:
            self.mode = mode
            self.latency_ms = latency_ms
            pairs = list(self._pairs) if mode == "reset" else []
            if mode == "reset":
                self._pairs.clear()
        for client, upstream in pairs:
            _rst_close(client)
            _rst_close(upstream)

    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for client, upstream in pairs:
            _rst_close(client)
            _rst_close(upstream)

    # -- the plumbing -------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # TimeoutError included: look at the stop flag again
                continue
            self.accepted += 1
            if self.mode == "reset":
                _rst_close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                _rst_close(client)  # the server is down: as a connection refused would look
                continue
            for sock in (client, upstream):
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=pair, name="faultproxy-pump", daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._stop.is_set():
                with self._lock:
                    if (client, upstream) not in self._pairs:
                        return  # reset by set_mode
                try:
                    readable, _, _ = select.select([client, upstream], [], [], 0.05)
                except (OSError, ValueError):
                    return
                for sock in readable:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return  # one side closed: close both, as a real proxy would
                    mode, latency_ms = self.mode, self.latency_ms
                    if mode == "blackhole" or (mode == "half_open" and sock is upstream):
                        continue  # read and dropped: never forwarded
                    if mode == "latency" and latency_ms > 0:
                        time.sleep(latency_ms / 1000)
                    try:
                        peers[sock].sendall(data)
                    except OSError:
                        return
        finally:
            with self._lock:
                self._pairs.discard((client, upstream))
            for sock in (client, upstream):
                try:
                    sock.close()
                except OSError:
                    pass
