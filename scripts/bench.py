#!/usr/bin/env python3
"""Benchmark kvcluster: the same as ``kvctl bench`` (see ``kvctl bench --help``).

python scripts/bench.py --workload write --concurrency 64 --seconds 10
"""

from kvcluster.cli import main

if __name__ == "__main__":
    main(["--json", "bench", *__import__("sys").argv[1:]])
