"""FastAPI with sync (``def``) endpoints over a SQLAlchemy engine that querycache is installed on.

Run it:   DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test uvicorn examples.fastapi_app:app
Try it:   curl -X POST localhost:8000/products -H 'content-type: application/json' -d '{"name": "pen", "price": 3}'
          curl localhost:8000/products; curl localhost:8000/products/1; curl localhost:8000/cache

FastAPI runs ``def`` endpoints in its thread pool; each request checks a connection out of the engine's
pool, and every pooled connection is a wrapped one (docs/integrations.md). Tested by
tests/test_examples.py through FastAPI's TestClient on PostgreSQL.
"""

import os
from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import querycache
from querycache.sqlalchemy import install

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TABLE = os.environ.get("QUERYCACHE_EXAMPLE_TABLE", "querycache_example_products")


class NewProduct(BaseModel):
    name: str
    price: int


class Price(BaseModel):
    price: int


def create_app(database_url: str = DATABASE_URL, cache: querycache.QueryCache | None = None,
               table: str = TABLE) -> FastAPI:
    """The application, on its own engine, cache and table (the tests pass theirs)."""
    cache = cache or querycache.QueryCache()  # embedded defaults; QueryCache.from_yaml(...) for Redis etc.
    engine = install(sa.create_engine(database_url, pool_size=4), cache)
    sessions = sessionmaker(engine)

    class Base(DeclarativeBase):
        pass

    class Product(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(80))
        price: Mapped[int] = mapped_column()

    def session() -> Iterator[Session]:
        with sessions() as s:
            yield s

    Db = Annotated[Session, Depends(session)]  # one session (one pool checkout) per request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        Base.metadata.create_all(engine)
        yield
        engine.dispose()

    app = FastAPI(title="querycache + FastAPI", lifespan=lifespan)
    app.state.engine, app.state.cache, app.state.metadata = engine, cache, Base.metadata

    def as_dict(product: Product) -> dict[str, Any]:
        return {"id": product.id, "name": product.name, "price": product.price}

    @app.get("/products")
    def list_products(db: Db) -> list[dict[str, Any]]:
        return [as_dict(p) for p in db.scalars(sa.select(Product).order_by(Product.id))]

    @app.get("/products/{product_id}")
    def get_product(product_id: int, db: Db) -> dict[str, Any]:
        product = db.scalars(sa.select(Product).where(Product.id == product_id)).one_or_none()
        if product is None:
            raise HTTPException(status_code=404, detail=f"no product {product_id}")
        return as_dict(product)

    @app.post("/products", status_code=201)
    def create_product(body: NewProduct, db: Db) -> dict[str, Any]:
        product = Product(name=body.name, price=body.price)
        db.add(product)
        db.commit()
        return as_dict(product)

    @app.put("/products/{product_id}/price")
    def set_price(product_id: int, body: Price, db: Db) -> dict[str, Any]:
        product = db.get(Product, product_id)
        if product is None:
            raise HTTPException(status_code=404, detail=f"no product {product_id}")
        product.price = body.price
        db.commit()
        return as_dict(product)

    @app.get("/report")
    def report(db: Db) -> dict[str, Any]:
        count, total = db.execute(sa.select(sa.func.count(Product.id), sa.func.coalesce(sa.func.sum(Product.price), 0))
                                  ).one()
        return {"products": count, "total_price": total}

    @app.get("/cache")
    def cache_stats() -> dict[str, Any]:
        stats = cache.stats().to_dict()
        return {key: stats[key] for key in ("hits", "misses", "bypasses", "fills")}

    return app


app = create_app()
