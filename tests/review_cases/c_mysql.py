from h import *
adm = my()
def ex(conn, s): conn.cursor().execute(s)
ex(adm, "CREATE DATABASE IF NOT EXISTS test2")
t = name("t"); ex(adm, f"CREATE TABLE test2.{t}(id int primary key, v int)"); ex(adm, f"INSERT INTO test2.{t} VALUES (1,1),(2,2)")
cache = querycache.QueryCache()
# C: cross-database
a = cache.wrap(my()); w = cache.wrap(my(db="test2"))
print(q(a, f"SELECT v FROM test2.{t} WHERE id=1"))
print(q(w, f"UPDATE {t} SET v=10 WHERE id=1"))
report("C cross-database read, write via USE'd db", q(a, f"SELECT v FROM test2.{t} WHERE id=1"), q(adm, f"SELECT v FROM test2.{t} WHERE id=1"))
# D: executable comment
b = cache.wrap(my())
print(q(b, f"SELECT v FROM test2.{t} WHERE id=2"))
report("D /*! */ executable comment (L2 key)", q(b, f"SELECT v FROM test2.{t} WHERE id=2 /*!50000 OR id=1 */"), q(adm, f"SELECT v FROM test2.{t} WHERE id=2 /*!50000 OR id=1 */"))
# F: user variables
u = cache.wrap(my())
ex(u, "SET @qv = 1"); print(q(u, "SELECT @qv")); ex(u, "SET @qv = 2")
report("F SELECT @var after SET @var", q(u, "SELECT @qv"), (q(u.wrapped, "SELECT @qv")[0],))
print(q(u, f"SELECT @x := v FROM test2.{t} WHERE id=2")); ex(u.wrapped, "SET @x = 0")
print(q(u, f"SELECT @x := v FROM test2.{t} WHERE id=2"))
report("F' SELECT @x := v served from cache leaves @x unset", q(u.wrapped, "SELECT @x"), ([(2,)],))
