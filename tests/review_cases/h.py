import psycopg, pymysql, querycache, uuid, sys
def pg(autocommit=True, **kw):
    return psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=autocommit, **kw)
def my(autocommit=True, db="test"):
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=db, autocommit=autocommit, local_infile=True)
def name(p="r"): return f"{p}_{uuid.uuid4().hex[:8]}"
def q(conn, sql, params=None):
    cur = conn.cursor(); cur.execute(sql, params) if params is not None else cur.execute(sql)
    rows = cur.fetchall() if cur.description else None
    return [tuple(r) for r in rows] if rows is not None else None, getattr(cur, "cache_status", "raw")
def report(label, got, truth):
    print(("BUG " if got[0] != truth[0] else "ok  ") + label, "cached:", got, "db:", truth)


def release_locks():
    """Scripts leave connections idle in transaction; end them so cleanup DDL does not wait."""
    admin = pg()
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'")
    admin.close()
    m = my()
    cur = m.cursor()
    cur.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id <> CONNECTION_ID()")
    for (thread,) in cur.fetchall():
        try:
            cur.execute(f"KILL {int(thread)}")
        except Exception:
            pass
    m.close()
