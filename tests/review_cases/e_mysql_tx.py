from h import *
adm = my()
def ex(conn, s): conn.cursor().execute(s)
t = name("t"); ex(adm, f"CREATE TABLE {t}(id int primary key, v int) ENGINE=InnoDB"); ex(adm, f"INSERT INTO {t} VALUES (1,1)")
cache = querycache.QueryCache()
r = cache.wrap(my()); w = cache.wrap(my(autocommit=False))
print(q(r, f"SELECT v FROM {t}"))
print(q(w, f"UPDATE {t} SET v=2"))
w.begin()     # PyMySQL begin(): implicitly commits the UPDATE
report("E PyMySQL begin() implicit commit", q(r, f"SELECT v FROM {t}"), q(adm, f"SELECT v FROM {t}"))
w.rollback()
# E2: consistent snapshot at START TRANSACTION, then pin read later
t2 = name("t"); ex(adm, f"CREATE TABLE {t2}(id int primary key, v int) ENGINE=InnoDB"); ex(adm, f"INSERT INTO {t2} VALUES (1,1)")
cache = querycache.QueryCache()
a = cache.wrap(my()); w = cache.wrap(my()); c = cache.wrap(my())
print(q(a, "START TRANSACTION WITH CONSISTENT SNAPSHOT"))
print(q(w, f"UPDATE {t2} SET v=2"))
print(q(a, f"SELECT v FROM {t2}"))
a.commit()
report("E2 WITH CONSISTENT SNAPSHOT -> stale L2 fill for others", q(c, f"SELECT v FROM {t2}"), q(adm, f"SELECT v FROM {t2}"))
# L: LOAD DATA LOCAL INFILE
t3 = name("t"); ex(adm, f"CREATE TABLE {t3}(id int primary key, v int)"); ex(adm, f"INSERT INTO {t3} VALUES (1,1)")
import tempfile; rows_file = tempfile.mkstemp(suffix=".txt")[1]; open(rows_file,"w").write("2\t2\n")
cache = querycache.QueryCache(); l = cache.wrap(my())
print(q(l, f"SELECT count(*) FROM {t3}"))
try:
    print(q(l, f"LOAD DATA LOCAL INFILE '{rows_file}' INTO TABLE {t3}"))
except Exception as e: print("load failed", e)
report("L LOAD DATA", q(l, f"SELECT count(*) FROM {t3}"), q(adm, f"SELECT count(*) FROM {t3}"))
# O: pymysql conn.query pass-through
print(q(l, f"SELECT v FROM {t3} WHERE id=1")); l.query(f"UPDATE {t3} SET v=99 WHERE id=1")
report("O PyMySQL Connection.query()", q(l, f"SELECT v FROM {t3} WHERE id=1"), q(adm, f"SELECT v FROM {t3} WHERE id=1"))
for x in (t,t2,t3): ex(adm, f"DROP TABLE {x}")
