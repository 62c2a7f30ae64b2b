"""``python -m bench`` runs the workload benchmark, the same as ``querycache bench workload``
(the runner is ``querycache/benchmark/``)."""

import sys

from querycache.benchmark.runner import main

if __name__ == "__main__":
    sys.exit(main())
