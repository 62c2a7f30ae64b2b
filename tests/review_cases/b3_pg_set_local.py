from h import *
t = name("t"); adm = pg()
adm.execute(f"CREATE TABLE {t}(id int primary key, v int)"); adm.execute(f"INSERT INTO {t} VALUES (1,1)")
cache = querycache.QueryCache()
a = cache.wrap(pg()); w = cache.wrap(pg()); c = cache.wrap(pg())
q(c, f"SELECT v FROM {t} WHERE id=1")
q(a, "BEGIN ISOLATION LEVEL REPEATABLE READ")
q(a, "SET LOCAL statement_timeout = '5s'")        # wrapper re-reads scope inside the tx: its SELECT takes the snapshot
q(w, f"UPDATE {t} SET v=2 WHERE id=1")
print(q(a, f"SELECT v FROM {t} WHERE id=1"))
a.commit()
report("B3 SET LOCAL in RR tx (scope refresh takes snapshot) -> other conn", q(c, f"SELECT v FROM {t} WHERE id=1"), q(adm, f"SELECT v FROM {t} WHERE id=1"))
adm.execute(f"DROP TABLE {t}")
