#!/usr/bin/env bash
# Set up .venv/ and run every check: ruff, mypy --strict, the docs site (mkdocs build --strict), the
# quick hot-path benchmark (bench/hotpaths.py --quick, ratios printed), then the whole test suite on
# the real sqlite, PostgreSQL, MariaDB and Redis of this machine (started first if they are down).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh dev,semantic,docs
bash scripts/services.sh
.venv/bin/ruff check querycache tests bench
.venv/bin/mypy
site_dir="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site_dir"
rm -rf "$site_dir"
# The hot paths against what they replace, as ratios (informational: timings are printed, never
# asserted; it fails only when a timed call was not what it measures; a few seconds; before the
# tests, so that pytest's summary closes the run). QUERYCACHE_SKIP_BENCH=1 leaves it out.
if [ "${QUERYCACHE_SKIP_BENCH:-}" != "1" ]; then
    .venv/bin/python bench/hotpaths.py --quick
fi
# pytest's own exit status fails this script, including 5 ("no tests collected").
.venv/bin/pytest -q "$@"
