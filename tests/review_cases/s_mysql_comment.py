from h import *
from querycache.analysis import Analyzer
a = Analyzer("mysql","pyformat")
for s in ["SELECT v FROM t WHERE id=2--1", "SELECT v FROM t WHERE id=2", "SELECT 'a\\'b'", "SELECT 'a''b'", "SELECT _binary'a' = 'A'", "SELECT 'a' = 'A' COLLATE utf8mb4_bin", "SELECT BINARY 'a' = 'A'", "SELECT \"a\"", "SELECT 1 /*!99999 + 1 */"]:
    print(repr(s), "->", a(s).normalized, a(s).kind.value, a(s).reason)
adm = my()
def ex(conn, s): conn.cursor().execute(s)
t = name("t"); ex(adm, f"CREATE TABLE {t}(id int primary key, v int)"); ex(adm, f"INSERT INTO {t} VALUES (1,1),(2,2),(3,3)")
cache = querycache.QueryCache(); c = cache.wrap(my())
print(q(c, f"SELECT v FROM {t} WHERE id=2"))
report("S MySQL '--1' is not a comment", q(c, f"SELECT v FROM {t} WHERE id=2--1"), q(adm, f"SELECT v FROM {t} WHERE id=2--1"))
ex(adm, f"DROP TABLE {t}")
