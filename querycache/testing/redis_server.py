"""A redis-server of the caller's own: tests and benchmarks kill, restart, fill or flush it, and
the shared Redis is never touched. Needs the ``redis-server`` binary and the ``redis`` extra."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time


class RedisServer:
    """A redis-server on a free port of 127.0.0.1, without persistence, kept across restarts.

    Raises ``FileNotFoundError`` when ``redis-server`` is not on the PATH (the tests turn that
    into a skip, or a failure under ``CI=true``)."""

    def __init__(self, directory: str, password: str | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise FileNotFoundError("redis-server is not on the PATH")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.dir = directory
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        # Without the password: a client of a server with one adds it (redis://:<password>@...).
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again: an empty one) and wait until it answers a PING."""
        import redis

        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", self.dir]
        if self.password is not None:
            command += ["--requirepass", self.password]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2).ping()
                return
            except Exception:  # noqa: BLE001 - still starting
                time.sleep(0.05)
        raise RuntimeError(f"the own redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """Kill the server (SIGKILL: as a crash would) and wait for it to exit."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
