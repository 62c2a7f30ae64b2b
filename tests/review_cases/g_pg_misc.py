from h import *
import time
adm = pg()
p, ch = name("p"), name("c")
adm.execute(f"CREATE TABLE {p}(id int primary key)"); adm.execute(f"CREATE TABLE {ch}(id int, pid int references {p}(id))")
adm.execute(f"INSERT INTO {p} VALUES (1)"); adm.execute(f"INSERT INTO {ch} VALUES (1,1)")
cache = querycache.QueryCache(); c = cache.wrap(pg())
print(q(c, f"SELECT count(*) FROM {ch}"))
print(q(c, f"TRUNCATE {p} CASCADE"))
report("G TRUNCATE ... CASCADE (NO ACTION FK child)", q(c, f"SELECT count(*) FROM {ch}"), q(adm, f"SELECT count(*) FROM {ch}"))
# H: view over volatile function
v = name("v"); adm.execute(f"CREATE VIEW {v} AS SELECT clock_timestamp() AS ts")
cache = querycache.QueryCache(); c = cache.wrap(pg())
a1 = q(c, f"SELECT ts FROM {v}"); time.sleep(0.05)
h2 = q(c, f"SELECT ts FROM {v}")
print(("ok  " if h2[1].startswith("bypass") and h2[0] != a1[0] else "BUG ") + "H view over volatile function", h2, a1)
# I: COPY (DELETE ... RETURNING) TO STDOUT via cursor.copy
t = name("t"); adm.execute(f"CREATE TABLE {t}(id int primary key, v int)"); adm.execute(f"INSERT INTO {t} VALUES (1,1),(2,2)")
cache = querycache.QueryCache(); c = cache.wrap(pg())
print(q(c, f"SELECT count(*) FROM {t}"))
cur = c.cursor()
try:
    with cur.copy(f"COPY (DELETE FROM {t} WHERE id=1 RETURNING *) TO STDOUT") as cp:
        for row in cp.rows(): pass
except Exception as e: print("copy err", e)
report("I cursor.copy of COPY (DELETE..RETURNING) TO", q(c, f"SELECT count(*) FROM {t}"), q(adm, f"SELECT count(*) FROM {t}"))
# J: EXPLAIN ANALYSE
print(q(c, f"EXPLAIN ANALYSE DELETE FROM {t} WHERE id=2"))
report("J EXPLAIN ANALYSE DELETE", q(c, f"SELECT count(*) FROM {t}"), q(adm, f"SELECT count(*) FROM {t}"))
# K: cursor.stream
adm.execute(f"INSERT INTO {t} VALUES (3,3)")
cache = querycache.QueryCache(); c = cache.wrap(pg())
print(q(c, f"SELECT count(*) FROM {t}"))
list(c.cursor().stream(f"DELETE FROM {t} RETURNING id"))
report("K psycopg cursor.stream(DELETE ... RETURNING)", q(c, f"SELECT count(*) FROM {t}"), q(adm, f"SELECT count(*) FROM {t}"))
for x in (ch, p, t): adm.execute(f"DROP TABLE {x}")
adm.execute(f"DROP VIEW {v}")
