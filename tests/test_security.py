"""Security (issue 9, part 5) on real PostgreSQL and a redis-server of the test's own.

- Scopes: the same SQL text never returns another scope's rows (role with its grants and an RLS
  policy, an RLS setting, search_path, database, tenant), through L1, L2 memory and L2 Redis.
- No SQL text and no parameter value in any Redis key name, nor in the values that name keys.
- No code execution from Redis content: no pickle anywhere; a pickle payload as an entry is a miss.
- Hint TTLs are capped by ``ttl.max_s`` (the store's own TTL on Redis says so).
- HMAC-signed entries: tampered, swapped or unsigned entries are misses, the rows come from the database.
- Secrets from the environment never appear in repr(config), logs (DEBUG, incl. a Redis outage),
  stats, or ``querycache doctor --json`` / ``stats --json``.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import querycache
from tests.backends.test_redis import RedisServer
from tests.conftest import PG_DSN, require

SECRET_PARAM = "SECRETVALUE123"


def _pg_admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(PG_DSN, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the service is absent
        require("PostgreSQL", exc)


def _dsn(**overrides: str) -> str:
    parts = dict(p.split("=", 1) for p in PG_DSN.split())
    parts.update(overrides)
    return " ".join(f"{k}={v}" for k, v in parts.items())


TIERS = ["l1", "l2-memory", "l2-redis"]


def _cache(tier: str, redis_url: str | None, **extra: Any) -> querycache.QueryCache:
    config: dict[str, Any] = {"scope": {"settings": ["app.tenant"]}, **extra}
    if tier == "l1":
        config["l2"] = {"enabled": False}
    else:
        config["l1"] = {"enabled": False}
    if tier == "l2-redis":
        config["l2"] = {"backend": "redis", "url": redis_url, "timeout_ms": 2000}
    return querycache.QueryCache.from_dict(config)


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    """Two roles (grants differ, RLS by owner and by the setting app.tenant), two schemas with a
    same-named table, and a same-named table in a second database (``postgres``)."""
    admin = _pg_admin()
    suffix = uuid.uuid4().hex[:8]
    roles = (f"qcsec_a_{suffix}", f"qcsec_b_{suffix}")
    schemas = (f"qcsec_s1_{suffix}", f"qcsec_s2_{suffix}")
    docs, secret, shared = f"qcsec_docs_{suffix}", f"qcsec_secret_{suffix}", f"qcsec_shared_{suffix}"
    statements = [f"CREATE ROLE {r} LOGIN" for r in roles] + [
        f"CREATE TABLE {docs} (id int PRIMARY KEY, owner text, tenant text, body text)",
        f"INSERT INTO {docs} VALUES (1, '{roles[0]}', 't1', 'a-t1'), (2, '{roles[0]}', 't2', 'a-t2'), "
        f"(3, '{roles[1]}', 't1', 'b-t1'), (4, '{roles[1]}', 't2', 'b-t2')",
        f"ALTER TABLE {docs} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY owner_and_tenant ON {docs} USING (owner = current_user AND "
        f"tenant = current_setting('app.tenant', true))",
        f"CREATE TABLE {secret} (id int, body text)",
        f"INSERT INTO {secret} VALUES (1, 'only role a may read this')",
        f"CREATE TABLE {shared} (id int, body text)",
        f"INSERT INTO {shared} VALUES (1, 'database one')",
    ]
    for role in roles:
        statements += [f"GRANT SELECT ON {docs} TO {role}", f"GRANT SELECT ON {shared} TO {role}"]
    statements.append(f"GRANT SELECT ON {secret} TO {roles[0]}")
    for i, schema in enumerate(schemas):
        statements += [f"CREATE SCHEMA {schema}", f"CREATE TABLE {schema}.items (id int, body text)",
                       f"INSERT INTO {schema}.items VALUES (1, 'schema {i + 1}')"]
    for statement in statements:
        admin.execute(statement)
    import psycopg

    other = psycopg.connect(_dsn(dbname="postgres"), autocommit=True)
    other.execute(f"CREATE TABLE {shared} (id int, body text)")
    other.execute(f"INSERT INTO {shared} VALUES (1, 'database two')")
    try:
        yield {"roles": roles, "schemas": schemas, "docs": docs, "secret": secret, "shared": shared}
    finally:
        other.execute(f"DROP TABLE IF EXISTS {shared}")
        other.close()
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)",
                      [list(roles)])
        for table in (docs, secret, shared):
            admin.execute(f"DROP TABLE IF EXISTS {table}")
        for schema in schemas:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        for role in roles:
            admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def _rows(conn: Any, sql: str, params: Any = None) -> tuple[Any, str | None]:
    cur = conn.cursor()
    cur.execute(sql, params)
    return [tuple(r) for r in cur.fetchall()], cur.cache_status


def _raw(dsn: str, sql: str, setup: str | None = None, params: Any = None) -> Any:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        if setup:
            conn.execute(setup)
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]


@pytest.mark.parametrize("tier", TIERS)
def test_scopes_never_share_entries(world: dict[str, Any], tier: str, own_redis: RedisServer) -> None:
    import psycopg

    cache = _cache(tier, own_redis.url)
    roles, docs = world["roles"], world["docs"]
    read_docs = f"SELECT id, body FROM {docs} ORDER BY id"
    try:
        # Roles (RLS by current_user) x tenants set through the RLS setting, each twice: the second
        # run may be answered by a tier, and must still be that scope's own rows.
        conns = {role: cache.wrap(psycopg.connect(_dsn(user=role), autocommit=True)) for role in roles}
        for _ in range(2):
            for role in roles:
                for tenant in ("t1", "t2"):
                    conns[role].cursor().execute(f"SET app.tenant = '{tenant}'")
                    expected = _raw(_dsn(user=role), read_docs, f"SET app.tenant = '{tenant}'")
                    assert len(expected) == 1
                    assert _rows(conns[role], read_docs)[0] == expected, (role, tenant)
                    # set_config() inside a read changes the scope too.
                    other = "t2" if tenant == "t1" else "t1"
                    _rows(conns[role], "SELECT set_config('app.tenant', %s, false)", [other])
                    assert _rows(conns[role], read_docs)[0] == _raw(
                        _dsn(user=role), read_docs, f"SET app.tenant = '{other}'"), (role, other)
        # Grants: role b may not read what role a has cached.
        read_secret = f"SELECT body FROM {world['secret']}"
        assert _rows(conns[roles[0]], read_secret)[0] == [("only role a may read this",)]
        assert _rows(conns[roles[0]], read_secret)[0] == [("only role a may read this",)]
        for _ in range(2):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                _rows(conns[roles[1]], read_secret)
        # search_path: two schemas, one table name, on one connection (L1 sees both) and on two.
        s1, s2 = world["schemas"]
        switching = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
        fixed = cache.wrap(psycopg.connect(_dsn(options=f"-csearch_path={s2}"), autocommit=True))
        for _ in range(2):
            for schema in (s1, s2):
                switching.cursor().execute(f"SET search_path TO {schema}")
                assert _rows(switching, "SELECT body FROM items")[0] == [(f"schema {1 + (schema == s2)}",)]
            assert _rows(fixed, "SELECT body FROM items")[0] == [("schema 2",)]
        # Two databases, one table name.
        read_shared = f"SELECT body FROM {world['shared']}"
        one = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
        two = cache.wrap(psycopg.connect(_dsn(dbname="postgres"), autocommit=True))
        for _ in range(2):
            assert _rows(one, read_shared)[0] == [("database one",)]
            assert _rows(two, read_shared)[0] == [("database two",)]
        # Tenants: same connection, same rows from the database, but never each other's entry.
        for tenant in ("acme", "globex", None):
            with cache.scope(tenant=tenant):
                _, status = _rows(one, read_shared + " WHERE id = 1")
                assert status == "miss", (tenant, status)
                assert _rows(one, read_shared + " WHERE id = 1")[1].startswith("hit"), tenant
        for conn in [*conns.values(), switching, fixed, one, two]:
            conn.close()
    finally:
        cache.close()


def test_no_sql_or_parameter_in_redis_keys(world: dict[str, Any], own_redis: RedisServer) -> None:
    import psycopg
    import redis

    cache = _cache("l2-redis", own_redis.url, l1={"enabled": True})
    shared = world["shared"]
    conn = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
    try:
        for _ in range(2):
            _rows(conn, f"SELECT id FROM {shared} WHERE body <> %s", [SECRET_PARAM])
            _rows(conn, f"/* cache ttl=60 group=g1 */ SELECT count(*) FROM {shared} WHERE id = %(id)s", {"id": 1})
        conn.cursor().execute(f"UPDATE {shared} SET body = body WHERE body <> %s", [SECRET_PARAM])
        _rows(conn, f"SELECT id FROM {shared} WHERE body <> %s", [SECRET_PARAM])
        cache.invalidate_groups("g1")
        cache.publish_stats()
        client = redis.Redis.from_url(own_redis.url)
        keys = list(client.scan_iter(count=1000))
        assert len(keys) >= 6
        forbidden = [SECRET_PARAM, shared, "SELECT", "select", "body", "WHERE", "count(", "g1"]
        stats_keys = [k for k in keys if b":stats:" in k]
        for key in keys:
            for needle in forbidden:
                assert needle.encode() not in key, (needle, key)
            # Every value that names things (members, fields) but the published stats snapshot.
            if key in stats_keys:
                continue
            kind = client.type(key)
            parts: list[bytes] = []
            if kind == b"string":
                parts = [client.get(key) or b""]
            elif kind == b"hash":
                for field, value in client.hgetall(key).items():
                    parts += [field, value]
            elif kind == b"zset":
                parts = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind in (b"set", b"list"):
                parts = list(client.smembers(key) if kind == b"set" else client.lrange(key, 0, -1))
            for part in parts:
                for needle in (SECRET_PARAM, shared, "SELECT", "WHERE"):
                    assert needle.encode() not in part, (needle, key, part[:200])
        # The stats snapshot lists statements (normalized SQL, for `querycache stats`), never parameters.
        assert stats_keys
        for key in stats_keys:
            assert SECRET_PARAM.encode() not in (client.get(key) or b"")
    finally:
        conn.close()
        cache.close()


_BANNED = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}


def _modules(only_benchmark: bool) -> list[Path]:
    package = Path(querycache.__file__).parent
    return [p for p in package.rglob("*.py") if (p.parent.name == "benchmark") == only_benchmark]


def test_no_pickle_in_the_cache() -> None:
    _check_no_pickle(_modules(only_benchmark=False))


def test_no_pickle_in_the_shipped_benchmark() -> None:
    _check_no_pickle(_modules(only_benchmark=True))


def _check_no_pickle(paths: list[Path]) -> None:
    assert paths
    banned = _BANNED
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not banned & set(names), (path, names)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec"), path


class _Boom:
    def __reduce__(self) -> Any:
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp") / f"qcsec-pickle-ran-{uuid.uuid4().hex}"


@pytest.mark.parametrize("hmac_secret", [None, "s3cret"])
def test_redis_content_never_executes_code(own_redis: RedisServer, tmp_path: Path,
                                           hmac_secret: str | None) -> None:
    import sqlite3

    import redis

    cache = querycache.QueryCache.from_dict({"l1": {"enabled": False}, "l2": {
        "backend": "redis", "url": own_redis.url, "timeout_ms": 2000, "hmac_secret": hmac_secret}})
    path = str(tmp_path / "p.db")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE t (a)")
    raw.execute("INSERT INTO t VALUES (1)")
    conn = cache.wrap(sqlite3.connect(path, isolation_level=None))
    client = redis.Redis.from_url(own_redis.url)
    try:
        assert _rows(conn, "SELECT a FROM t") == ([(1,)], "miss")
        assert _rows(conn, "SELECT a FROM t") == ([(1,)], "hit:L2")
        entries = [k for k in client.scan_iter(match="querycache:e:*") if client.type(k) == b"hash"]
        assert entries
        payloads = [pickle.dumps(_Boom()), pickle.dumps(_Boom(), protocol=0),
                    b"\x80\x04" + pickle.dumps(_Boom())[2:]]
        for payload in payloads:
            for key in entries:
                # Signed the way the store signs, when there is a secret: the codec alone must refuse it.
                value = cache.backend._sign(key.decode(), payload)  # type: ignore[attr-defined]
                client.hset(key, "v", value)
            assert _rows(conn, "SELECT a FROM t") == ([(1,)], "miss")
            assert not MARKER.exists()
        assert cache.stats().to_dict()["not_filled"].get("corrupt_entry", 0) >= 1
    finally:
        MARKER.unlink(missing_ok=True)
        conn.close()
        raw.close()
        cache.close()


def test_hmac_rejects_tampered_swapped_and_unsigned_entries(own_redis: RedisServer, tmp_path: Path) -> None:
    import sqlite3

    import redis

    def make(secret: str | None) -> querycache.QueryCache:
        return querycache.QueryCache.from_dict({"l1": {"enabled": False}, "l2": {
            "backend": "redis", "url": own_redis.url, "timeout_ms": 2000, "hmac_secret": secret}})

    cache = make("s3cret")
    path = str(tmp_path / "h.db")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE t (a, b)")
    raw.executemany("INSERT INTO t VALUES (?, ?)", [(1, "one"), (2, "two")])
    conn = cache.wrap(sqlite3.connect(path, isolation_level=None))
    client = redis.Redis.from_url(own_redis.url)
    one, two = "SELECT b FROM t WHERE a = 1", "SELECT b FROM t WHERE a = 2"
    try:
        for sql in (one, two):
            _rows(conn, sql)
            assert _rows(conn, sql)[1] == "hit:L2"
        entries = sorted(k for k in client.scan_iter(match="querycache:e:*") if client.type(k) == b"hash")
        assert len(entries) == 2
        values = {k: client.hget(k, "v") for k in entries}
        # Swapped: each key holds the other's validly signed value.
        client.hset(entries[0], "v", values[entries[1]])
        client.hset(entries[1], "v", values[entries[0]])
        assert _rows(conn, one) == ([("one",)], "miss")
        assert _rows(conn, two) == ([("two",)], "miss")
        # Tampered: one payload byte flipped, MAC kept.
        for key in entries:
            value = bytearray(client.hget(key, "v") or b"")
            value[-1] ^= 1
            client.hset(key, "v", bytes(value))
        assert _rows(conn, one) == ([("one",)], "miss")
        # Unsigned: an entry written by a cache without the secret.
        unsigned = make(None)
        other = unsigned.wrap(sqlite3.connect(path, isolation_level=None))
        unsigned.flush("l2")
        assert _rows(other, two) == ([("two",)], "miss")
        assert _rows(other, two) == ([("two",)], "hit:L2")
        assert _rows(conn, two) == ([("two",)], "miss")
        other.close()
        unsigned.close()
    finally:
        conn.close()
        raw.close()
        cache.close()


def test_hint_ttl_is_capped_by_ttl_max_s(own_redis: RedisServer, tmp_path: Path) -> None:
    import sqlite3

    import redis

    cache = querycache.QueryCache.from_dict({
        "l1": {"enabled": False}, "ttl": {"default_s": 60, "max_s": 120, "tables": {"t": 5000}},
        "l2": {"backend": "redis", "url": own_redis.url, "timeout_ms": 2000}})
    path = str(tmp_path / "ttl.db")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE t (a)")
    conn = cache.wrap(sqlite3.connect(path, isolation_level=None))
    client = redis.Redis.from_url(own_redis.url)
    try:
        for sql in ("/* cache ttl=999999 */ SELECT a FROM t", "/* cache ttl=999999 swr=999999 */ SELECT a, a FROM t",
                    "SELECT a, a, a FROM t", "/* cache ttl=99999999999999999999 */ SELECT 1, a FROM t"):
            before = set(client.scan_iter(match="querycache:e:*"))
            _rows(conn, sql)
            assert _rows(conn, sql)[1] == "hit:L2", sql
            new = [k for k in set(client.scan_iter(match="querycache:e:*")) - before if client.type(k) == b"hash"]
            assert len(new) == 1, sql
            assert 0 < client.pttl(new[0]) <= 120_000, (sql, client.pttl(new[0]))
    finally:
        conn.close()
        raw.close()
        cache.close()


# -- secrets ---------------------------------------------------------------------------------------------

PASSWORD = "PWD" + uuid.uuid4().hex[:10]
HMAC_SECRET = "HMAC" + uuid.uuid4().hex[:10]


class _PasswordRedis(RedisServer):
    def start(self) -> None:
        import time

        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--requirepass", PASSWORD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                redis.Redis(port=self.port, password=PASSWORD, socket_connect_timeout=0.2).ping()
                return
            except Exception:  # noqa: BLE001 - still starting
                time.sleep(0.05)
        raise RuntimeError("own redis-server did not start")


@pytest.fixture
def password_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_PasswordRedis]:
    server = _PasswordRedis(str(tmp_path))
    server.start()
    monkeypatch.setenv("QC_PASS", PASSWORD)
    monkeypatch.setenv("QC_SECRET", HMAC_SECRET)
    yield server
    server.stop()


def _secret_config(port: int) -> dict[str, Any]:
    return {"l2": {"backend": "redis", "url": f"redis://:${{QC_PASS}}@127.0.0.1:{port}/0",
                   "hmac_secret": "${QC_SECRET}", "timeout_ms": 500}}


def _no_secret(text: str, where: str) -> None:
    assert PASSWORD not in text, f"the Redis password appears in {where}"
    assert HMAC_SECRET not in text, f"the HMAC secret appears in {where}"


def test_config_takes_secrets_from_the_environment(password_redis: _PasswordRedis) -> None:
    config = querycache.Config.from_dict(_secret_config(password_redis.port))
    assert config.l2.hmac_secret == HMAC_SECRET and PASSWORD in (config.l2.url or "")


def test_secrets_not_in_repr_of_config(password_redis: _PasswordRedis) -> None:
    config = querycache.Config.from_dict(_secret_config(password_redis.port))
    for text in (repr(config), str(config), repr(config.l2)):
        _no_secret(text, "repr(config)")


def _workload_with_outage(server: _PasswordRedis, tmp_path: Path) -> querycache.QueryCache:
    import sqlite3

    cache = querycache.QueryCache.from_dict(_secret_config(server.port))
    _no_secret(repr(cache), "repr(cache)")
    path = str(tmp_path / "s.db")
    conn = cache.wrap(sqlite3.connect(path, isolation_level=None))
    conn.execute("CREATE TABLE t (a)")
    conn.execute("INSERT INTO t VALUES (1)")
    for _ in range(3):
        _rows(conn, "SELECT a FROM t WHERE a = ?", [1])
    server.stop()  # an outage: breaker opens, failures are logged
    for i in range(6):
        assert _rows(conn, "SELECT a FROM t WHERE a = ?", [i])[0] == ([(1,)] if i == 1 else [])
    conn.execute("INSERT INTO t VALUES (2)")
    server.start()  # back: the breaker closes, caching resumes
    import time

    for _ in range(20):
        if _rows(conn, "SELECT a FROM t ORDER BY a")[1] != "bypass:store_unavailable":
            break
        time.sleep(0.1)
    assert _rows(conn, "SELECT a FROM t ORDER BY a")[0] == [(1,), (2,)]
    conn.close()
    return cache


def test_secrets_not_in_stats(password_redis: _PasswordRedis, tmp_path: Path) -> None:
    cache = _workload_with_outage(password_redis, tmp_path)
    try:
        _no_secret(json.dumps(cache.stats().to_dict(), default=str), "cache.stats().to_dict()")
        _no_secret(json.dumps(cache.fleet_stats(), default=str), "cache.fleet_stats()")
    finally:
        cache.close()


def test_secrets_not_in_logs(password_redis: _PasswordRedis, tmp_path: Path,
                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cache = _workload_with_outage(password_redis, tmp_path)
    cache.close()
    assert caplog.records, "the outage should have been logged"
    _no_secret("\n".join(r.getMessage() for r in caplog.records), "logs")


def _cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QC_PASS": PASSWORD, "QC_SECRET": HMAC_SECRET}
    return subprocess.run([sys.executable, "-m", "querycache", "--config", str(config_path), *args],
                          capture_output=True, text=True, env=env)


def test_secrets_not_in_cli_output(password_redis: _PasswordRedis, tmp_path: Path) -> None:
    path = tmp_path / "qc.yaml"
    path.write_text(yaml.safe_dump(_secret_config(password_redis.port)), encoding="utf-8")
    for command in (("doctor", "--json"), ("stats", "--json"), ("explain", "--json", "SELECT 1")):
        result = _cli(path, *command)
        assert result.stdout.strip(), (command, result.stderr)
        json.loads(result.stdout)
        _no_secret(result.stdout + result.stderr, " ".join(command))


def test_secrets_not_in_doctor_output_while_redis_is_down(password_redis: _PasswordRedis, tmp_path: Path) -> None:
    path = tmp_path / "qc.yaml"
    path.write_text(yaml.safe_dump(_secret_config(password_redis.port)), encoding="utf-8")
    password_redis.stop()
    for command in (("doctor", "--json"), ("stats", "--json")):
        result = _cli(path, *command)
        _no_secret(result.stdout + result.stderr, " ".join(command) + " (store down)")
