#!/usr/bin/env bash
# Set up .venv/ and run every check: ruff, mypy --strict, then the whole test suite on the real
# sqlite, PostgreSQL and MariaDB of this machine (started first if they are down).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh dev,semantic
bash scripts/services.sh
.venv/bin/ruff check querycache tests bench
.venv/bin/mypy
# pytest's own exit status fails this script, including 5 ("no tests collected").
.venv/bin/pytest -q "$@"
