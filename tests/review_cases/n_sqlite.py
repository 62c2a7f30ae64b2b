import sqlite3, querycache, os, tempfile
from h import report
def q(conn, sql):
    cur = conn.cursor(); cur.execute(sql); return [tuple(r) for r in cur.fetchall()], getattr(cur, "cache_status", "raw")
path = tempfile.mktemp(suffix=".db")
raw = sqlite3.connect(path); raw.execute("CREATE TABLE b(id integer primary key, data blob)"); raw.execute("INSERT INTO b VALUES (1, x'00')"); raw.commit()
cache = querycache.QueryCache(); c = cache.wrap(sqlite3.connect(path))
print(q(c, "SELECT data FROM b"))
with c.blobopen("b", "data", 1) as blob: blob.write(b"\x07")
c.commit()
report("N sqlite blobopen write", q(c, "SELECT data FROM b"), q(raw, "SELECT data FROM b"))
# attached database written by another connection
path2 = tempfile.mktemp(suffix=".db")
r2 = sqlite3.connect(path2); r2.execute("CREATE TABLE b(id integer primary key, data blob)"); r2.execute("INSERT INTO b VALUES (1, x'01')"); r2.commit()
c = cache.wrap(sqlite3.connect(path)); c.execute(f"ATTACH '{path2}' AS aux")
print(q(c, "SELECT data FROM aux.b"))
w = cache.wrap(sqlite3.connect(path2)); w.execute("UPDATE b SET data = x'02'"); w.commit()
report("N2 sqlite ATTACHed db written via its own wrapped connection", q(c, "SELECT data FROM aux.b"), q(r2, "SELECT data FROM b"))
