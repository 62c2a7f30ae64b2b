"""A minimal Django project on querycache's PostgreSQL backend (docs/integrations.md, "Django").

The database comes from QUERYCACHE_EXAMPLE_DB_* (default: the local test server); the test runner's
database is QUERYCACHE_EXAMPLE_TEST_DB (created and dropped by `manage.py test`).
"""

import os

SECRET_KEY = "querycache-example-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_site.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "querycache.django",  # manage.py querycache stats
    "shop",
]

DATABASES = {
    "default": {
        "ENGINE": "querycache.django.postgresql",  # Django's own PostgreSQL backend, with querycache in front
        "NAME": os.environ.get("QUERYCACHE_EXAMPLE_DB_NAME", "test"),
        "USER": os.environ.get("QUERYCACHE_EXAMPLE_DB_USER", "postgres"),
        "PASSWORD": os.environ.get("QUERYCACHE_EXAMPLE_DB_PASSWORD", ""),
        "HOST": os.environ.get("QUERYCACHE_EXAMPLE_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("QUERYCACHE_EXAMPLE_DB_PORT", "5432"),
        "TEST": {"NAME": os.environ.get("QUERYCACHE_EXAMPLE_TEST_DB", "test_querycache_django_site")},
    }
}

# querycache's configuration, in the shape of its YAML file (docs/configuration.md). One QueryCache per
# configuration per process. For a fleet of processes, a shared store:
#   QUERYCACHE = {"l2": {"backend": "redis", "url": "redis://127.0.0.1:6379/0"}}
QUERYCACHE = {
    "ttl": {"default_s": 300},
}
