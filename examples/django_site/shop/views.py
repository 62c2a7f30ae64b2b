"""Views reading through the ORM (cached by querycache) and one writing (in atomic(), with on_commit)."""

import json

from django.db import transaction
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404

from querycache.django import cache_of
from shop.models import Category, Product

# What on_commit callbacks saw after a price change (the tests read it).
COMMITTED_PRICES: list[int] = []


def _product(p: Product) -> dict:
    return {"id": p.id, "name": p.name, "price": p.price, "category": p.category.name}


def products(request: HttpRequest) -> JsonResponse:
    rows = Product.objects.select_related("category").order_by("id")
    return JsonResponse({"products": [_product(p) for p in rows]})


def product(request: HttpRequest, product_id: int) -> JsonResponse:
    return JsonResponse(_product(get_object_or_404(Product.objects.select_related("category"), id=product_id)))


def set_price(request: HttpRequest, product_id: int) -> JsonResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    price = int(json.loads(request.body)["price"])
    with transaction.atomic():
        p = get_object_or_404(Product.objects.select_for_update(), id=product_id)
        p.price = price
        p.save(update_fields=["price"])
        transaction.on_commit(lambda: COMMITTED_PRICES.append(Product.objects.get(id=product_id).price))
    return JsonResponse({"id": product_id, "price": price})


def report(request: HttpRequest) -> JsonResponse:
    rows = (Category.objects.annotate(n=Count("products"), total=Sum("products__price"))
            .order_by("name").values("name", "n", "total"))
    return JsonResponse({"categories": list(rows)})


def cache_stats(request: HttpRequest) -> JsonResponse:
    stats = cache_of("default").stats().to_dict()
    return JsonResponse({key: stats[key] for key in ("hits", "misses", "bypasses")})
