from h import *
t = name("t"); adm = pg()
adm.execute(f"CREATE TABLE {t}(id int primary key, v int)"); adm.execute(f"INSERT INTO {t} VALUES (1,1)")
cache = querycache.QueryCache()
a = cache.wrap(pg()); w = cache.wrap(pg()); c = cache.wrap(pg())
print(q(a, "BEGIN ISOLATION LEVEL REPEATABLE READ"))
print(q(a, "SELECT now() IS NOT NULL"))          # bypass:volatile, but takes the RR snapshot
print(q(w, f"UPDATE {t} SET v=2 WHERE id=1"))     # committed + published through the wrapper
print(q(a, f"SELECT v FROM {t} WHERE id=1"))       # pin read: old snapshot, fills L2 with a later stamp
a.commit()
report("RR pin after snapshot-taking bypass -> other conn (L2)", q(c, f"SELECT v FROM {t} WHERE id=1"), q(adm, f"SELECT v FROM {t} WHERE id=1"))
# variant: psycopg conn.transaction() block with RR
t2 = name("t"); adm.execute(f"CREATE TABLE {t2}(id int primary key, v int)"); adm.execute(f"INSERT INTO {t2} VALUES (1,1)")
cache = querycache.QueryCache()
a = cache.wrap(pg()); w = cache.wrap(pg()); c = cache.wrap(pg())
a.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
with a.transaction():
    q(a, f"SELECT count(*) FROM {t2} /* cache skip */")
    q(w, f"UPDATE {t2} SET v=2 WHERE id=1")
    print(q(a, f"SELECT v FROM {t2} WHERE id=1"))
report("RR via transaction() + cache skip read -> other conn", q(c, f"SELECT v FROM {t2} WHERE id=1"), q(adm, f"SELECT v FROM {t2} WHERE id=1"))
adm.execute(f"DROP TABLE {t}"); adm.execute(f"DROP TABLE {t2}")
