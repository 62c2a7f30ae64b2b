from django.urls import path
from shop import views

urlpatterns = [
    path("products/", views.products),
    path("products/<int:product_id>/", views.product),
    path("products/<int:product_id>/price/", views.set_price),
    path("report/", views.report),
    path("cache/", views.cache_stats),
]
