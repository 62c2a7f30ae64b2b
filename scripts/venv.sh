#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at .venv/ and install querycache into it.
# Usage: source scripts/venv.sh [extras]   (default extras: dev)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1-dev}"
if [ ! -x "$root/.venv/bin/python" ]; then
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/python" -m pip install --quiet --upgrade pip
fi
target="$root"
if [ -n "$extras" ]; then target="$root[$extras]"; fi
"$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target"
