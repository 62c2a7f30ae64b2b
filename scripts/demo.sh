#!/usr/bin/env bash
# Set up .venv/ and run `querycache demo`: every tier on a sqlite shop (the embedded default: L1,
# in-memory L2, L3 with the default n-gram embedder, coalescing), uncached then cached, each answer
# compared. Installs the `demo` extra (FAISS, numpy, matplotlib; no torch). Options go to the demo:
#   bash scripts/demo.sh --quick            # a few seconds
#   bash scripts/demo.sh --redis redis://127.0.0.1:6379/0   # two processes sharing Redis
set -euo pipefail
cd "$(dirname "$0")/.."
extras=demo
for arg in "$@"; do
  if [ "$arg" = "--redis" ] || [[ "$arg" == --redis=* ]]; then extras=demo,redis; fi
done
bash scripts/venv.sh "$extras"
exec .venv/bin/querycache demo "$@"
