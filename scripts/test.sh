#!/usr/bin/env bash
# Set up .venv/ and run every check: ruff, mypy --strict, the docs site (mkdocs build --strict), then
# the whole test suite on the real sqlite, PostgreSQL, MariaDB and Redis of this machine (started
# first if they are down).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh dev,semantic,docs
bash scripts/services.sh
.venv/bin/ruff check querycache tests bench
.venv/bin/mypy
site_dir="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site_dir"
rm -rf "$site_dir"
# pytest's own exit status fails this script, including 5 ("no tests collected").
.venv/bin/pytest -q "$@"
