from h import *
adm = pg()
s1, s2 = name("s"), name("s")
for s, val in ((s1, 1), (s2, 2)):
    adm.execute(f"CREATE SCHEMA {s}"); adm.execute(f"CREATE TABLE {s}.items(v int)"); adm.execute(f"INSERT INTO {s}.items VALUES ({val})")
adm.execute(f"CREATE FUNCTION {s1}_go(p text) RETURNS text LANGUAGE sql AS $$ SELECT set_config('search_path', p, false) $$")
cache = querycache.QueryCache(); c = cache.wrap(pg())
q(c, f"SET search_path = {s1}")
print(q(c, "SELECT v FROM items"))
print(q(c, f"SELECT public.{s1}_go('{s2}')"))
report("M search_path changed inside a function", q(c, "SELECT v FROM items"), q(c.wrapped, "SELECT v FROM items"))
# M2: SET LOCAL inside conn.transaction(), scope after the block ends
c = cache.wrap(pg()); q(c, f"SET search_path = {s1}")
with c.transaction():
    q(c, f"SET LOCAL search_path = {s2}")
    print(q(c, "SELECT v FROM items"))
report("M2 SET LOCAL in transaction() block, after exit", q(c, "SELECT v FROM items"), q(c.wrapped, "SELECT v FROM items"))
# M3: SET (session) inside a transaction that is rolled back through transaction() + exception
c = cache.wrap(pg()); q(c, f"SET search_path = {s1}")
try:
    with c.transaction():
        q(c, f"SET search_path = {s2}"); q(c, "SELECT v FROM items"); raise RuntimeError
except RuntimeError: pass
report("M3 session SET rolled back by transaction() exception", q(c, "SELECT v FROM items"), q(c.wrapped, "SELECT v FROM items"))
# M4: psycopg autocommit switch ends tx with SET LOCAL? (autocommit can't be set in tx) -> with conn: block
c = cache.wrap(pg(autocommit=False)); q(c, f"SET search_path = {s1}"); c.commit()
q(c, f"SET LOCAL search_path = {s2}"); print(q(c, "SELECT v FROM items"))
c.wrapped.commit()  # driver-level commit, not through the wrapper
report("M4 SET LOCAL then raw commit", q(c, "SELECT v FROM items"), q(c.wrapped, "SELECT v FROM items"))
release_locks()
adm.execute(f"DROP SCHEMA {s1} CASCADE"); adm.execute(f"DROP SCHEMA {s2} CASCADE")
