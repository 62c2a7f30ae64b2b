"""The examples run: examples/fastapi_app.py through FastAPI's TestClient, and examples/django_site/'s
own tests through Django's test runner (a subprocess: Django is configured once per process), both on
the real PostgreSQL."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import querycache
from tests.conftest import PG_DSN, Database

ROOT = Path(__file__).resolve().parent.parent
_PG = dict(item.split("=", 1) for item in PG_DSN.split())
PG_URL = (f"postgresql+psycopg://{_PG.get('user', 'postgres')}@{_PG.get('host', '127.0.0.1')}:"
          f"{_PG.get('port', '5432')}/{_PG.get('dbname', 'test')}")


def _load_fastapi_example() -> Any:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")  # TestClient's transport
    spec = importlib.util.spec_from_file_location("querycache_fastapi_example", ROOT / "examples" / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # SQLAlchemy and FastAPI resolve its annotations through it
    spec.loader.exec_module(module)
    return module


def test_fastapi_example(pg: Database) -> None:
    from fastapi.testclient import TestClient

    example = _load_fastapi_example()
    table = pg.t("products")
    pg.tables.append(table)
    with querycache.QueryCache() as cache:
        app = example.create_app(PG_URL, cache, table)
        with TestClient(app) as client:
            for name, price in (("pen", 3), ("ink", 7)):
                assert client.post("/products", json={"name": name, "price": price}).status_code == 201
            listing = [{"id": 1, "name": "pen", "price": 3}, {"id": 2, "name": "ink", "price": 7}]
            before = client.get("/cache").json()["hits"]
            for _ in range(5):
                assert client.get("/products").json() == listing
                assert client.get("/products/2").json() == listing[1]
                assert client.get("/report").json() == {"products": 2, "total_price": 10}
            after = client.get("/cache").json()["hits"]
            assert after["l1"] + after["l2"] >= before["l1"] + before["l2"] + 10, (before, after)
            # A write through the application: every read after it shows it.
            assert client.put("/products/2/price", json={"price": 9}).json()["price"] == 9
            assert client.get("/products/2").json()["price"] == 9
            assert client.get("/products").json()[1]["price"] == 9
            assert client.get("/report").json() == {"products": 2, "total_price": 12}
            assert client.post("/products", json={"name": "cap", "price": 1}).status_code == 201
            assert [p["name"] for p in client.get("/products").json()] == ["pen", "ink", "cap"]
            assert client.get("/report").json() == {"products": 3, "total_price": 13}
            assert client.get("/products/99").status_code == 404
            # And another process's view (a plain connection) agrees.
            conn = pg.connect()
            try:
                assert conn.execute(f"SELECT name, price FROM {table} ORDER BY id").fetchall() == [
                    ("pen", 3), ("ink", 9), ("cap", 1)]
            finally:
                conn.close()


def test_django_example_site(pg: Database) -> None:
    pytest.importorskip("django")
    site = ROOT / "examples" / "django_site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "QUERYCACHE_EXAMPLE_DB_HOST": _PG.get("host", "127.0.0.1"),
           "QUERYCACHE_EXAMPLE_DB_PORT": _PG.get("port", "5432"),
           "QUERYCACHE_EXAMPLE_DB_USER": _PG.get("user", "postgres"),
           "QUERYCACHE_EXAMPLE_DB_NAME": _PG.get("dbname", "test"),
           # Django's test runner creates and drops this database: one of this run's own.
           "QUERYCACHE_EXAMPLE_TEST_DB": f"test_{pg.prefix}_site"}
    done = subprocess.run([sys.executable, "manage.py", "test", "shop", "--noinput", "-v", "2"], cwd=site, env=env,
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "querycache hits" in output, output
    assert "OK" in output, output
