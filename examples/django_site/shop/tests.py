"""The example site through Django's test client, on PostgreSQL with querycache in front.

TransactionTestCase, not TestCase: TestCase runs every test inside a transaction that has written its
fixtures, and reads in a transaction that wrote are never cached (bypass:tx_dirty); here each request
runs in autocommit, as in production.
"""

import io
import json

from django.core.management import call_command
from django.test import Client, TransactionTestCase

from querycache.django import cache_of
from shop import views
from shop.models import Category, Product


def hits() -> int:
    found = cache_of("default").stats().to_dict()["hits"]
    return found["l1"] + found["l2"]


class ShopTests(TransactionTestCase):
    def setUp(self) -> None:
        pens, inks = Category.objects.create(name="pens"), Category.objects.create(name="inks")
        self.pen = Product.objects.create(name="pen", price=3, category=pens)
        self.ink = Product.objects.create(name="ink", price=7, category=inks)
        self.client = Client()

    def test_reads_are_cached_and_writes_are_seen(self) -> None:
        before = hits()
        for _ in range(5):
            listing = self.client.get("/products/").json()["products"]
            self.assertEqual([(p["name"], p["price"], p["category"]) for p in listing],
                             [("pen", 3, "pens"), ("ink", 7, "inks")])
            self.assertEqual(self.client.get(f"/products/{self.ink.id}/").json()["price"], 7)
            self.assertEqual(self.client.get("/report/").json()["categories"],
                             [{"name": "inks", "n": 1, "total": 7}, {"name": "pens", "n": 1, "total": 3}])
        served = hits() - before
        print(f"querycache hits {served}")
        self.assertGreaterEqual(served, 10)

        response = self.client.post(f"/products/{self.ink.id}/price/", json.dumps({"price": 9}),
                                    content_type="application/json")
        self.assertEqual(response.json(), {"id": self.ink.id, "price": 9})
        self.assertEqual(views.COMMITTED_PRICES[-1], 9)  # on_commit read the committed price
        self.assertEqual(self.client.get(f"/products/{self.ink.id}/").json()["price"], 9)
        self.assertEqual([p["price"] for p in self.client.get("/products/").json()["products"]], [3, 9])
        self.assertEqual(self.client.get("/report/").json()["categories"],
                         [{"name": "inks", "n": 1, "total": 9}, {"name": "pens", "n": 1, "total": 3}])

    def test_a_rolled_back_write_is_not_seen(self) -> None:
        from django.db import transaction

        self.assertEqual(self.client.get(f"/products/{self.pen.id}/").json()["price"], 3)
        try:
            with transaction.atomic():
                Product.objects.filter(id=self.pen.id).update(price=1000)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        for _ in range(2):
            self.assertEqual(self.client.get(f"/products/{self.pen.id}/").json()["price"], 3)

    def test_management_command(self) -> None:
        for _ in range(3):
            self.client.get("/products/")
        out = io.StringIO()
        call_command("querycache", "stats", "--json", stdout=out)
        counters = json.loads(out.getvalue())["counters"]
        self.assertGreater(counters["hits"]["l1"] + counters["hits"]["l2"], 0)
