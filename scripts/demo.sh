#!/usr/bin/env bash
# Set up .venv/ and run `querycache demo`: a sqlite workload on the embedded default
# (L1 + in-memory L2), uncached then cached, with hit ratios and the speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh ""
exec .venv/bin/querycache demo "$@"
