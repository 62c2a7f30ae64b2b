import sys

from bench.workload.runner import main

if __name__ == "__main__":
    sys.exit(main())
