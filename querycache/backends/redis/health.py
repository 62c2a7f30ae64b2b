"""The Redis store's checks for ``querycache doctor``: version, latency, eviction policy, pub/sub."""

from __future__ import annotations

import time
import uuid

import redis


def problems(client: redis.Redis) -> list[str]:
    """What in the server's configuration breaks the clock (an eviction policy that may drop it)."""
    found = []
    policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
    if str(policy).startswith("allkeys-"):
        found.append(f"maxmemory-policy is {policy}: it may evict clock keys; use volatile-* or noeviction")
    return found


def report(client: redis.Redis, timeout_s: float) -> list[tuple[str, str, str]]:
    """(check, ok|warn|fail, detail with the fix) for each check."""
    checks: list[tuple[str, str, str]] = []
    info = client.info("server")
    version = str(info.get("redis_version", "?"))
    major = int(version.split(".")[0]) if version[:1].isdigit() else 0
    checks.append(("redis version", "ok" if major >= 6 else "fail",
                   version if major >= 6 else f"{version}: Redis 6 or newer is needed"))
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - started)
    median_ms = sorted(samples)[len(samples) // 2] * 1000
    budget_ms = timeout_s * 1000
    checks.append(("redis latency", "ok" if median_ms < budget_ms / 2 else "warn",
                   f"PING median {median_ms:.2f} ms (l2.timeout_ms {budget_ms:.0f})"
                   + ("" if median_ms < budget_ms / 2 else ": raise l2.timeout_ms or move Redis closer")))
    found = problems(client)
    policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
    detail = found[0] if found else str(policy)
    checks.append(("redis maxmemory-policy", "fail" if found else "ok", detail))
    checks.append(_pubsub(client))
    return checks


def _pubsub(client: redis.Redis) -> tuple[str, str, str]:
    channel = f"qc:doctor:{uuid.uuid4().hex}"
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(channel)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "subscribe":
                break
        client.publish(channel, b"ping")
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "message":
                return ("redis pub/sub", "ok", "a published message arrived")
        return ("redis pub/sub", "fail", "a published message did not arrive within 2 s: coherence leases "
                                         "cannot be granted; check proxies between the app and Redis")
    finally:
        pubsub.close()
