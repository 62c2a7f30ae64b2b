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
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import querycache
from querycache.testing.redis_server import RedisServer
from tests.conftest import PG_DSN, own_redis_server, require

SECRET_PARAM = "SECRETVALUE123"


def _pg_admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(PG_DSN, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the service is absent
        require("PostgreSQL", exc)


def _dsn_parts(**overrides: str) -> dict[str, str]:
    return {**dict(p.split("=", 1) for p in PG_DSN.split()), **overrides}


def _url(**overrides: str) -> str:
    """The test database as a postgresql:// URL (what the command line takes)."""
    parts = _dsn_parts(**overrides)
    return f"postgresql://{parts['user']}@{parts['host']}:{parts.get('port', '5432')}/{parts['dbname']}"


def _dsn(**overrides: str) -> str:
    return " ".join(f"{k}={v}" for k, v in _dsn_parts(**overrides).items())


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


@pytest.fixture
def password_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    server = own_redis_server(tmp_path, password=PASSWORD)
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


def test_config_takes_secrets_from_the_environment(password_redis: RedisServer) -> None:
    config = querycache.Config.from_dict(_secret_config(password_redis.port))
    assert config.l2.hmac_secret == HMAC_SECRET and PASSWORD in (config.l2.url or "")


def test_secrets_not_in_repr_of_config(password_redis: RedisServer) -> None:
    config = querycache.Config.from_dict(_secret_config(password_redis.port))
    for text in (repr(config), str(config), repr(config.l2)):
        _no_secret(text, "repr(config)")


def _workload_with_outage(server: RedisServer, tmp_path: Path) -> querycache.QueryCache:
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


def test_secrets_not_in_stats(password_redis: RedisServer, tmp_path: Path) -> None:
    cache = _workload_with_outage(password_redis, tmp_path)
    try:
        _no_secret(json.dumps(cache.stats().to_dict(), default=str), "cache.stats().to_dict()")
        _no_secret(json.dumps(cache.fleet_stats(), default=str), "cache.fleet_stats()")
    finally:
        cache.close()


def test_secrets_not_in_logs(password_redis: RedisServer, tmp_path: Path,
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


def test_secrets_not_in_cli_output(password_redis: RedisServer, tmp_path: Path) -> None:
    path = tmp_path / "qc.yaml"
    path.write_text(yaml.safe_dump(_secret_config(password_redis.port)), encoding="utf-8")
    for command in (("doctor", "--json"), ("stats", "--json"), ("explain", "--json", "SELECT 1")):
        result = _cli(path, *command)
        assert result.stdout.strip(), (command, result.stderr)
        json.loads(result.stdout)
        _no_secret(result.stdout + result.stderr, " ".join(command))


def test_secrets_not_in_doctor_output_while_redis_is_down(password_redis: RedisServer, tmp_path: Path) -> None:
    path = tmp_path / "qc.yaml"
    path.write_text(yaml.safe_dump(_secret_config(password_redis.port)), encoding="utf-8")
    password_redis.stop()
    for command in (("doctor", "--json"), ("stats", "--json")):
        result = _cli(path, *command)
        _no_secret(result.stdout + result.stderr, " ".join(command) + " (store down)")


# -- row-level security discovered from the catalog (issue 16) ---------------------------------------
#
# The default configuration (no scope.settings): every policy kind, every tier, a reused connection,
# a pool. Each answer is compared with the same statement on a raw connection in the same state.

RLS_TIERS = ["l1", "l2-memory", "l2-redis", "l3"]


def _rls_cache(tier: str, redis_url: str | None, **extra: Any) -> querycache.QueryCache:
    config: dict[str, Any] = dict(extra)
    if tier == "l1":
        config["l2"] = {"enabled": False}
    elif tier in ("l2-memory", "l3"):
        config.setdefault("l1", {"enabled": False})
    elif tier == "l2-redis":
        config.setdefault("l1", {"enabled": False})
        config["l2"] = {"backend": "redis", "url": redis_url, "timeout_ms": 2000}
    if tier == "l3":
        config["l3"] = {"enabled": True, "model": "ngram", "all_reads": True, "budget_ms": 10000}
    cache = querycache.QueryCache.from_dict(config)
    if cache.l3 is not None:
        assert cache.l3.worker.wait_ready(120)
    return cache


@pytest.fixture
def rls_world() -> Iterator[dict[str, Any]]:
    """Tables owned by a non-superuser role, one per policy kind, two application roles, a role with
    BYPASSRLS, a group role for membership policies, and a table without row-level security."""
    admin = _pg_admin()
    sfx = uuid.uuid4().hex[:8]
    w: dict[str, Any] = {
        "owner": f"qcrls_owner_{sfx}", "a": f"qcrls_a_{sfx}", "b": f"qcrls_b_{sfx}",
        "bypass": f"qcrls_bypass_{sfx}", "group": f"qcrls_mgr_{sfx}", "function": f"qcrls_tenant_{sfx}",
        "plfunction": f"qcrls_pltenant_{sfx}",
    }
    for kind in ("setting", "user", "member", "func", "plfunc", "sub", "acl", "plain", "forced", "late"):
        w[kind] = f"qcrls_{kind}_{sfx}"
    w["view"] = f"qcrls_view_{sfx}"
    w["barrier"] = f"qcrls_barrier_{sfx}"
    tenant_rows = "(1, 't1', 'one-t1'), (2, 't2', 'two-t2'), (3, 't1', 'three-t1')"
    owned_rows = f"(1, '{w['a']}', 'a-doc'), (2, '{w['b']}', 'b-doc'), (3, '{w['owner']}', 'owner-doc')"
    statements = [
        f"CREATE ROLE {w['owner']} LOGIN", f"CREATE ROLE {w['a']} LOGIN", f"CREATE ROLE {w['b']} LOGIN",
        f"CREATE ROLE {w['bypass']} LOGIN BYPASSRLS", f"CREATE ROLE {w['group']} NOLOGIN",
        f"CREATE FUNCTION {w['function']}() RETURNS text LANGUAGE sql STABLE "
        f"AS $$ SELECT current_setting('app.tenant', true) $$",
        f"CREATE FUNCTION {w['plfunction']}() RETURNS text LANGUAGE plpgsql STABLE "
        f"AS $$ BEGIN RETURN current_setting('app.tenant', true); END $$",
    ]
    for kind in ("setting", "func", "plfunc", "forced", "late"):
        statements += [f"CREATE TABLE {w[kind]} (id int PRIMARY KEY, tenant text, body text)",
                       f"INSERT INTO {w[kind]} VALUES {tenant_rows}"]
    for kind in ("user", "member", "sub"):
        statements += [f"CREATE TABLE {w[kind]} (id int PRIMARY KEY, owner text, body text)",
                       f"INSERT INTO {w[kind]} VALUES {owned_rows}"]
    statements += [
        f"CREATE TABLE {w['acl']} (doc int, who text)", f"INSERT INTO {w['acl']} VALUES (1, '{w['a']}')",
        f"CREATE TABLE {w['plain']} (id int, body text)", f"INSERT INTO {w['plain']} VALUES (1, 'plain')",
        f"CREATE POLICY p ON {w['setting']} USING (tenant = current_setting('app.tenant', true))",
        f"CREATE POLICY p ON {w['forced']} USING (tenant = current_setting('app.tenant', true))",
        f"CREATE POLICY p ON {w['user']} USING (owner = current_user)",
        f"CREATE POLICY p ON {w['member']} USING (pg_has_role(current_user, '{w['group']}', 'member') "
        f"OR owner = current_user)",
        f"CREATE POLICY p ON {w['func']} USING (tenant = {w['function']}())",
        f"CREATE POLICY p ON {w['plfunc']} USING (tenant = {w['plfunction']}())",
        f"CREATE POLICY p ON {w['sub']} USING (id IN (SELECT doc FROM {w['acl']} WHERE who = current_user))",
        f"CREATE VIEW {w['view']} WITH (security_invoker = true) AS SELECT id, body FROM {w['setting']}",
        # Not security_invoker: the forced table's policy is checked as the view's owner, with the
        # reading session's settings.
        f"CREATE VIEW {w['barrier']} WITH (security_barrier) AS SELECT id, body FROM {w['forced']}",
        f"ALTER TABLE {w['forced']} FORCE ROW LEVEL SECURITY",
    ]
    for kind in ("setting", "user", "member", "func", "plfunc", "sub", "forced"):
        statements.append(f"ALTER TABLE {w[kind]} ENABLE ROW LEVEL SECURITY")
    for kind in ("setting", "user", "member", "func", "plfunc", "sub", "acl", "plain", "forced", "late", "view",
                 "barrier"):
        statements.append(f"ALTER {'VIEW' if kind in ('view', 'barrier') else 'TABLE'} {w[kind]} OWNER TO {w['owner']}")
        statements.append(f"GRANT SELECT ON {w[kind]} TO {w['a']}, {w['b']}, {w['bypass']}")
    statements.append(f"GRANT INSERT, DELETE ON {w['acl']} TO {w['a']}, {w['b']}")
    for statement in statements:
        admin.execute(statement)
    try:
        yield w
    finally:
        roles = [w[k] for k in ("owner", "a", "b", "bypass", "group")]
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)", [roles])
        admin.execute(f"DROP VIEW IF EXISTS {w['view']}, {w['barrier']}")
        for kind in ("setting", "user", "member", "func", "plfunc", "sub", "acl", "plain", "forced", "late"):
            admin.execute(f"DROP TABLE IF EXISTS {w[kind]}")
        admin.execute(f"DROP FUNCTION IF EXISTS {w['function']}(), {w['plfunction']}()")
        for role in roles:
            admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def _connect_as(role: str, autocommit: bool = True) -> Any:
    import psycopg

    return psycopg.connect(_dsn(user=role), autocommit=autocommit)


class _Twin:
    """A raw connection of the same role kept in the same session state as a wrapped one."""

    def __init__(self, cache: querycache.QueryCache, role: str) -> None:
        self.raw = _connect_as(role)
        self.wrapped = cache.wrap(_connect_as(role))
        self.statuses: list[str | None] = []

    def run(self, sql: str, params: Any = None) -> list[Any]:
        """Run on both; the wrapped answer must be the raw one."""
        cur = self.raw.cursor()
        cur.execute(sql, params)
        expected = [tuple(r) for r in cur.fetchall()] if cur.description is not None else None
        got, status = _rows(self.wrapped, sql, params) if expected is not None else (None, None)
        if expected is None:
            self.wrapped.cursor().execute(sql, params)
        self.statuses.append(status)
        assert got == expected, (sql, params, status)
        return expected or []

    def tenant(self, name: str | None) -> None:
        self.run("SELECT set_config('app.tenant', %s, false)", [name or ""])

    def tenant_rounds(self, sql: str, tenants: tuple[str, ...] = ("t1", "t2", "t1", "t2")) -> None:
        """Switch tenants back and forth, reading ``sql`` twice in each (the second may be a hit)."""
        for name in tenants:
            self.tenant(name)
            self.run(sql)
            self.run(sql)

    def close(self) -> None:
        self.raw.close()
        self.wrapped.close()


def _tenant_rounds(cache: querycache.QueryCache, w: dict[str, Any]) -> dict[str, _Twin]:
    """Two application roles and the owner switch tenants on reused connections; every read is
    checked against the raw twin, each twice (the second may be answered by the cache)."""
    twins = {role: _Twin(cache, w[role]) for role in ("a", "b", "owner", "bypass")}
    reads = [f"SELECT id, body FROM {w['setting']} ORDER BY id", f"SELECT id, body FROM {w['view']} ORDER BY id",
             f"SELECT id, body FROM {w['forced']} ORDER BY id", f"SELECT id, body FROM {w['user']} ORDER BY id",
             f"SELECT id, body FROM {w['member']} ORDER BY id", f"SELECT id, body FROM {w['barrier']} ORDER BY id",
             # A policy calling a one-line SQL function: querycache sees into it.
             f"SELECT id, body FROM {w['func']} ORDER BY id"]
    for _ in range(2):
        for tenant in ("t1", "t2", None, "t1"):
            for twin in twins.values():
                twin.tenant(tenant)
                for sql in reads:
                    twin.run(sql)
                    twin.run(sql)
    return twins


@pytest.mark.parametrize("tier", RLS_TIERS)
def test_rls_scopes_come_from_the_catalog(rls_world: dict[str, Any], tier: str, own_redis: RedisServer) -> None:
    """Default configuration: no tenant, role, owner or BYPASSRLS session ever gets another's rows;
    repeated reads in one tenant hit; a table without row-level security is shared across tenants."""
    w = rls_world
    cache = _rls_cache(tier, own_redis.url)
    try:
        twins = _tenant_rounds(cache, w)
        hits = [s for t in twins.values() for s in t.statuses if s and s.startswith("hit")]
        assert hits, "repeated reads in one tenant must still hit"
        assert cache.stats().to_dict()["bypasses"].get("rls_opaque", 0) == 0
        if tier != "l1":
            # Not affected: the plain table's entry is shared by every tenant of one role.
            a = twins["a"]
            plain = f"SELECT body FROM {w['plain']}"
            a.tenant("t1")
            a.run(plain)
            a.tenant("t2")
            a.run(plain)
            assert a.statuses[-1] == "hit:L2", a.statuses[-1]
        if tier == "l3":
            from querycache.semantic.tier import wait_until_indexed

            assert cache.l3 is not None
            a = twins["a"]
            first = f"SELECT s.id, s.body FROM {w['setting']} s WHERE s.id > 0 AND s.body <> 'x' ORDER BY s.id"
            twin = f"SELECT q.id, q.body FROM {w['setting']} AS q WHERE (0 < q.id) AND q.body <> 'x' ORDER BY q.id"
            a.tenant("t1")
            a.run(first)
            assert wait_until_indexed(cache.l3, len(cache.l3.index) or 1)
            time.sleep(0.2)  # the index is filled asynchronously
            a.tenant("t2")
            a.run(twin)  # tenant t2 must not be answered from tenant t1's entry
            assert a.statuses[-1] != "hit:L3"
            a.tenant("t1")
            a.run(twin)
            assert a.statuses[-1] == "hit:L3", "the same tenant's rewritten twin is an L3 hit"
        for twin_ in twins.values():
            twin_.close()
    finally:
        cache.close()


def test_rls_transaction_local_settings_and_pool_resets(rls_world: dict[str, Any]) -> None:
    """set_config(..., true) and SET LOCAL end with the transaction; RESET and DISCARD ALL (what a
    pool runs between requests) read the scope again."""
    import psycopg

    w = rls_world
    cache = querycache.QueryCache()
    read = f"SELECT id, body FROM {w['setting']} ORDER BY id"
    try:
        raw = _connect_as(w["a"], autocommit=False)
        wrapped = cache.wrap(_connect_as(w["a"], autocommit=False))

        def both(sql: str, params: Any = None, fetch: bool = True) -> None:
            for conn in (raw, wrapped):
                cur = conn.cursor()
                cur.execute(sql, params)
                rows = [tuple(r) for r in cur.fetchall()] if fetch else None
                if conn is raw:
                    expected = rows
            assert rows == expected, (sql, rows, expected)

        def commit() -> None:
            raw.commit()
            wrapped.commit()

        for local in ("SELECT set_config('app.tenant', 't2', true)", "SET LOCAL app.tenant = 't2'"):
            both("SELECT set_config('app.tenant', 't1', false)")
            commit()
            both(read)
            both(read)
            commit()
            both(local, fetch=local.startswith("SELECT"))
            both(read)  # t2 inside this transaction
            both(read)
            commit()
            both(read)  # t1 again: the local setting ended with the transaction
            both(read)
            commit()
        for reset in ("RESET app.tenant", "RESET ALL", "DISCARD ALL"):
            both("SELECT set_config('app.tenant', 't2', false)")
            commit()
            both(read)
            both(read)
            commit()
            if reset == "DISCARD ALL":
                raw.autocommit = wrapped.autocommit = True  # DISCARD ALL cannot run in a transaction
            both(reset, fetch=False)
            both(read)
            both(read)
            if reset == "DISCARD ALL":
                raw.autocommit = wrapped.autocommit = False
            commit()
        raw.close()
        wrapped.close()
    finally:
        cache.close()
    assert psycopg  # the driver the fixture uses


def test_rls_membership_bypassrls_and_owner(rls_world: dict[str, Any]) -> None:
    """A GRANT through a wrapped connection changes what a membership policy shows; BYPASSRLS,
    owner (with and without FORCE) and application roles never share entries."""
    w = rls_world
    cache = querycache.QueryCache()
    member = f"SELECT id, body FROM {w['member']} ORDER BY id"
    try:
        a = _Twin(cache, w["a"])
        admin = cache.wrap(_pg_admin())
        assert a.run(member) == [(1, "a-doc")]
        a.run(member)
        assert a.statuses[-1] == "hit:L1"
        admin.cursor().execute(f"GRANT {w['group']} TO {w['a']}")
        assert len(a.run(member)) == 3  # a member now: every row
        admin.cursor().execute(f"REVOKE {w['group']} FROM {w['a']}")
        assert a.run(member) == [(1, "a-doc")]
        twins = {role: _Twin(cache, w[role]) for role in ("bypass", "owner")}
        for twin in (a, *twins.values()):
            twin.tenant("t1")
        setting, forced = f"SELECT id FROM {w['setting']} ORDER BY id", f"SELECT id FROM {w['forced']} ORDER BY id"
        for _ in range(2):
            assert a.run(setting) == [(1,), (3,)]
            assert twins["bypass"].run(setting) == [(1,), (2,), (3,)]
            assert twins["owner"].run(setting) == [(1,), (2,), (3,)]  # the owner, RLS not forced
            assert twins["owner"].run(forced) == [(1,), (3,)]  # FORCE: the owner is filtered too
            assert twins["bypass"].run(forced) == [(1,), (2,), (3,)]
        for twin in (a, *twins.values()):
            twin.close()
        admin.close()
    finally:
        cache.close()


def test_rls_opaque_policies_are_not_cached_unless_declared(rls_world: dict[str, Any]) -> None:
    """A plpgsql function or a subquery in a policy: bypass:rls_opaque (counted, explained) by default;
    declared in scope.policy_settings or by a settings= hint, cached and still isolated; a write to
    the table a policy's subquery reads changes the answer."""
    w = rls_world
    func, sub = f"SELECT id, body FROM {w['plfunc']} ORDER BY id", f"SELECT id, body FROM {w['sub']} ORDER BY id"
    cache = querycache.QueryCache()
    try:
        a = _Twin(cache, w["a"])
        a.tenant("t1")
        for sql in (func, sub):
            a.run(sql)
            a.run(sql)
            assert a.statuses[-2:] == ["bypass:rls_opaque"] * 2, a.statuses
            explained = a.wrapped.explain(sql)
            assert explained["why"] == "bypass:rls_opaque" and explained["row_security"]
        assert cache.stats().to_dict()["bypasses"]["rls_opaque"] == 4
        a.tenant_rounds(f"/* cache settings=app.tenant */ {func}")
        assert a.statuses[-12:][2::3] == ["hit:L1"] * 4, a.statuses[-12:]  # each tenant's second read
        a.close()
    finally:
        cache.close()
    declared = querycache.QueryCache.from_dict(
        {"scope": {"policy_settings": {w["plfunc"]: ["app.tenant"], w["sub"]: []}}, "l1": {"enabled": False}})
    try:
        twins = {role: _Twin(declared, w[role]) for role in ("a", "b")}
        for _ in range(2):
            for tenant in ("t1", "t2"):
                for twin in twins.values():
                    twin.tenant(tenant)
                    for sql in (func, sub):
                        twin.run(sql)
                        twin.run(sql)
                        assert twin.statuses[-1] == "hit:L2", (sql, twin.statuses[-1])
        # Role b is granted document 2 through the table the subquery reads: b sees it at once.
        b = twins["b"]
        b.run(f"INSERT INTO {w['acl']} VALUES (2, '{w['b']}')")
        assert b.run(sub) == [(2, "b-doc")]
        b.run(f"DELETE FROM {w['acl']} WHERE who = '{w['b']}'")
        assert b.run(sub) == []
        for twin in twins.values():
            twin.close()
    finally:
        declared.close()


@pytest.mark.parametrize("tier", ["l1", "l2-redis"])
def test_rls_pool_switching_tenants(rls_world: dict[str, Any], tier: str, own_redis: RedisServer) -> None:
    """A psycopg_pool pool of one role, wrapped once per pooled connection, serving requests of
    random tenants: every answer is the tenant's own; most are cache hits."""
    import random

    from psycopg_pool import ConnectionPool

    w = rls_world
    cache = _rls_cache(tier, own_redis.url)
    read = f"SELECT id, body FROM {w['setting']} ORDER BY id"
    expected = {t: _raw(_dsn(user=w["a"]), read, f"SET app.tenant = '{t}'") for t in ("t1", "t2")}
    assert expected["t1"] != expected["t2"]
    wrapped: dict[int, Any] = {}
    statuses = []
    pool = ConnectionPool(_dsn(user=w["a"]), min_size=2, max_size=2, kwargs={"autocommit": True}, open=True)
    try:
        draw = random.Random(16)
        for _ in range(60):
            tenant = draw.choice(["t1", "t2"])
            with pool.connection() as raw:
                conn = wrapped.setdefault(id(raw), cache.wrap(raw))
                conn.cursor().execute("SELECT set_config('app.tenant', %s, false)", [tenant])
                rows, status = _rows(conn, read)
                assert rows == expected[tenant], (tenant, status)
                statuses.append(status)
        assert len(wrapped) == 2
        assert sum(1 for s in statuses if s and s.startswith("hit")) > 30, statuses
    finally:
        pool.close()
        cache.close()


def test_rls_policy_created_elsewhere_is_seen(rls_world: dict[str, Any], own_redis: RedisServer) -> None:
    """Row-level security enabled through another cache on the same Redis (another process) after
    this one read the table: this one reads its catalog again and scopes the table from then on."""
    w = rls_world
    reader_cache = _rls_cache("l2-redis", own_redis.url, l1={"enabled": True})
    admin_cache = _rls_cache("l2-redis", own_redis.url)
    late = f"SELECT id, body FROM {w['late']} ORDER BY id"
    try:
        a = _Twin(reader_cache, w["a"])
        a.tenant("t1")
        assert len(a.run(late)) == 3
        a.run(late)
        assert a.statuses[-1] == "hit:L1"
        owner = admin_cache.wrap(_connect_as(w["owner"]))
        owner.cursor().execute(f"CREATE POLICY p ON {w['late']} USING (tenant = current_setting('app.tenant', true))")
        owner.cursor().execute(f"ALTER TABLE {w['late']} ENABLE ROW LEVEL SECURITY")
        a.tenant_rounds(late)
        assert a.statuses[-1] == "hit:L1"
        a.close()
        owner.close()
    finally:
        reader_cache.close()
        admin_cache.close()


def test_rls_mutation_dropping_a_discovered_setting_leaks(rls_world: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above can fail: with the policies' settings dropped from the scope, tenant t2 is
    served tenant t1's rows."""
    from querycache.drivers import postgres
    from querycache.drivers.row_security import RowSecurity

    real = postgres.row_security

    def without_settings(*args: Any, **kwargs: Any) -> RowSecurity:
        found = real(*args, **kwargs)
        return RowSecurity(found.table, found.forced, found.policies, frozenset(), found.identity,
                           found.opaque, found.reads_tables)

    monkeypatch.setattr(postgres, "row_security", without_settings)
    cache = querycache.QueryCache()
    try:
        a = _Twin(cache, rls_world["a"])
        with pytest.raises(AssertionError, match="hit:L1"):
            for tenant in ("t1", "t2"):
                a.tenant(tenant)
                a.run(f"SELECT id, body FROM {rls_world['setting']} ORDER BY id")
        a.close()
    finally:
        cache.close()


def test_rls_doctor_lists_tables_and_what_their_scopes_add(rls_world: dict[str, Any], tmp_path: Path) -> None:
    w = rls_world
    config = tmp_path / "qc.yaml"
    config.write_text(yaml.safe_dump({"scope": {"policy_settings": {w["sub"]: []}}}))
    result = subprocess.run([sys.executable, "-m", "querycache", "--config", str(config), "doctor", "--json",
                             "--dsn", _url(user=w["a"])],
                            capture_output=True, text=True, timeout=120)
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    setting = checks[f"row security: {w['setting']}"]
    assert setting["status"] == "ok" and "settings app.tenant" in setting["detail"], setting
    forced = checks[f"row security: {w['forced']}"]
    assert "FORCE" in forced["detail"], forced
    assert "session_user" not in checks[f"row security: {w['user']}"]["detail"]
    func = checks[f"row security: {w['func']}"]
    assert func["status"] == "ok" and "settings app.tenant" in func["detail"], func
    plfunc = checks[f"row security: {w['plfunc']}"]
    assert plfunc["status"] == "warn" and "rls_opaque" in plfunc["detail"] and w["plfunction"] in plfunc["detail"]
    sub = checks[f"row security: {w['sub']}"]
    assert sub["status"] == "ok" and "declared" in sub["detail"], sub
