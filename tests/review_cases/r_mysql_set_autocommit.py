from h import *
adm = my()
def ex(conn, s): conn.cursor().execute(s)
t = name("t"); ex(adm, f"CREATE TABLE {t}(id int primary key, v int) ENGINE=InnoDB"); ex(adm, f"INSERT INTO {t} VALUES (1,1)")
cache = querycache.QueryCache()
a = cache.wrap(my()); w = cache.wrap(my()); c = cache.wrap(my())
print(q(a, "SET autocommit = 0"))
print(q(a, f"SELECT count(*) FROM {t} /* cache skip */"))   # opens an RR transaction server-side; wrapper thinks autocommit
print(q(w, f"UPDATE {t} SET v=2"))
print(q(a, f"SELECT v FROM {t}"))                           # old snapshot, filled with a fresh stamp
report("R SET autocommit=0 via SQL (PyMySQL) -> other conn", q(c, f"SELECT v FROM {t}"), q(adm, f"SELECT v FROM {t}"))
release_locks()
ex(adm, f"DROP TABLE {t}")
