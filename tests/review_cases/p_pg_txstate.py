from h import *
t = name("t"); adm = pg()
adm.execute(f"CREATE TABLE {t}(id int primary key, v int)"); adm.execute(f"INSERT INTO {t} VALUES (1,1)")
cache = querycache.QueryCache()
def run(conn, label):
    out = []
    q(conn, f"SELECT v FROM {t}"); conn.rollback() if hasattr(conn, "rollback") else None
    r = q(conn, f"SELECT v FROM {t}")
    out.append(("status_after_select", r[1], str(conn.info.transaction_status)))
    try:
        conn.autocommit = True; out.append("autocommit switch ok")
    except Exception as e: out.append(f"{type(e).__name__}")
    return out
cached = run(cache.wrap(pg(autocommit=False)), "c")
raw = run(pg(autocommit=False), "r")
same = cached[0][2] == raw[0][2] and cached[1:] == raw[1:]
print(("ok  " if same else "BUG ") + "P transaction state after a hit equals the driver's", cached, raw)
adm.execute(f"DROP TABLE {t}")
