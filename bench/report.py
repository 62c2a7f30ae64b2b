"""Run the core benchmarks and report cached vs raw medians side by side.

    .venv/bin/python bench/report.py [extra pytest args, e.g. -k sqlite]

Runs ``bench/test_bench_core.py`` under pytest-benchmark with ``--benchmark-json``, then prints, per
group, each path's raw and querycache medians and their ratio (cached / raw), checks the design
budgets, and writes:

* ``bench/results/core.json``: the pytest-benchmark JSON (without per-round ``data``), plus a
  ``querycache_summary`` key;
* ``bench/results/core.md``: a Markdown table (path, raw median µs, querycache median µs, ratio).

Exit status: pytest's when it failed, 0 otherwise (budgets are reported, not enforced).

The Redis-specific figures (miss overhead on Redis, invalidation throughput with and without other
lease holders, bump delivery latency and ``wait_for_acks``) come from a separate standalone script,
``bench/redis_clock.py [--quick]``, which writes ``bench/results/redis.{json,md}``.
Request-coalescing stampede vs dogpile.cache: ``bench/stampede.py [--quick]`` (``bench/results/stampede.*``).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
JSON_PATH = RESULTS / "core.json"
MD_PATH = RESULTS / "core.md"
GROUP_ORDER = ["l1-vs-sqlite", "l1-stats", "l1-vs-postgres", "codec", "analysis", "miss-overhead"]

# Budgets from the design.
L1_HIT_MAX_US = 3.0
L1_HIT_MAX_RATIO = 1.5
MISS_OVERHEAD_MAX_US = 20.0


def run_pytest(extra: list[str]) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    if JSON_PATH.exists():
        JSON_PATH.unlink()
    cmd = [
        sys.executable, "-m", "pytest", "bench/test_bench_core.py", "bench/test_bench_redis.py",
        "-p", "no:cacheprovider", "-q",
        "--benchmark-warmup=on",
        "--benchmark-sort=name",
        f"--benchmark-json={JSON_PATH.relative_to(ROOT)}",
        *extra,
    ]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


def summarize(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per path: the raw and the cached benchmark's medians (µs) and their ratio."""
    paths: dict[str, dict[str, Any]] = {}
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        path, role = info.get("path"), info.get("role")
        if not path or role not in ("raw", "cached"):
            continue
        row = paths.setdefault(path, {"group": bench["group"], "path": path, "raw": None, "cached": None})
        row[role] = {"name": bench["name"], "median_us": bench["stats"]["median"] * 1e6,
                     "rounds": bench["stats"]["rounds"], "iqr_us": bench["stats"]["iqr"] * 1e6}
    rows = []
    for row in paths.values():
        raw, cached = row["raw"], row["cached"]
        row["raw_median_us"] = raw["median_us"] if raw else None
        row["cached_median_us"] = cached["median_us"] if cached else None
        if raw and cached:
            row["ratio"] = cached["median_us"] / raw["median_us"]
            row["delta_us"] = cached["median_us"] - raw["median_us"]
        else:
            row["ratio"] = row["delta_us"] = None
        rows.append(row)
    order = {g: i for i, g in enumerate(GROUP_ORDER)}
    rows.sort(key=lambda r: (order.get(r["group"], len(order)), r["path"]))
    return rows


def budgets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for row in rows:
        if row["group"] == "l1-vs-sqlite" and row["cached_median_us"] is not None:
            checks.append({"budget": f"L1 hit (sqlite, 10 rows) median <= {L1_HIT_MAX_US:g} µs",
                           "value": f"{row['cached_median_us']:.2f} µs",
                           "ok": row["cached_median_us"] <= L1_HIT_MAX_US})
            if row["ratio"] is not None:
                checks.append({"budget": f"L1 hit <= {L1_HIT_MAX_RATIO:g}x raw in-memory sqlite point query",
                               "value": f"{row['ratio']:.2f}x",
                               "ok": row["ratio"] <= L1_HIT_MAX_RATIO})
        if row["group"] == "miss-overhead" and row["delta_us"] is not None:
            which = "sqlite" if "sqlite" in row["path"] else "postgres"
            checks.append({"budget": f"miss overhead ({which}, memory store) <= {MISS_OVERHEAD_MAX_US:g} µs",
                           "value": f"+{row['delta_us']:.2f} µs",
                           "ok": row["delta_us"] <= MISS_OVERHEAD_MAX_US})
    return checks


def _fmt(value: float | None, spec: str) -> str:
    return "skipped" if value is None else format(value, spec)


def print_report(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    print()
    print("querycache core benchmarks: medians, cached / raw")
    group = None
    for row in rows:
        if row["group"] != group:
            group = row["group"]
            print(f"\n[{group}]")
        print(f"  {row['path']}")
        print(f"    raw {_fmt(row['raw_median_us'], '10.3f')} µs   querycache {_fmt(row['cached_median_us'], '10.3f')}"
              f" µs   ratio {_fmt(row['ratio'], '.3g')}   delta {_fmt(row['delta_us'], '+.2f')} µs")
    print()
    for row in rows:
        if row["group"].startswith("l1-vs-") and row["cached_median_us"] is not None:
            print(f"L1-hit median ({row['group'][6:]}): {row['cached_median_us']:.3f} µs")
    print()
    for check in checks:
        print(f"  [{'OK ' if check['ok'] else 'OVER'}] {check['budget']}: {check['value']}")


def markdown(rows: list[dict[str, Any]], checks: list[dict[str, Any]], data: dict[str, Any]) -> str:
    machine = data.get("machine_info", {})
    commit = data.get("commit_info", {})
    lines = [
        "# querycache core benchmarks",
        "",
        f"{data.get('datetime', '')} · Python {machine.get('python_version', platform.python_version())} · "
        f"{machine.get('cpu', {}).get('brand_raw', machine.get('processor', ''))} · "
        f"commit {str(commit.get('id', ''))[:10]}{' (dirty)' if commit.get('dirty') else ''}",
        "",
        "| path | raw median µs | querycache median µs | ratio |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['path']} | {_fmt(row['raw_median_us'], '.3f')} | "
                     f"{_fmt(row['cached_median_us'], '.3f')} | {_fmt(row['ratio'], '.3g')} |")
    lines += ["", "Ratio = querycache median / raw median. For `analysis`, raw = a fresh parse "
              "and querycache = the memoized lookup.", "", "## Budgets", ""]
    for check in checks:
        lines.append(f"- {'OK' if check['ok'] else '**OVER**'}: {check['budget']}: {check['value']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    status = run_pytest(argv)
    if not JSON_PATH.exists():
        print(f"pytest exited with {status} and wrote no {JSON_PATH}", file=sys.stderr)
        return status or 1
    data = json.loads(JSON_PATH.read_text(encoding="utf-8"))
    rows = summarize(data)
    checks = budgets(rows)
    print_report(rows, checks)
    data["querycache_summary"] = {"rows": rows, "budgets": checks}
    for bench in data.get("benchmarks", []):
        bench["stats"].pop("data", None)  # every round's timing: tens of MB, not needed for the report
    JSON_PATH.write_text(json.dumps(data, indent=2), encoding="utf-8")
    MD_PATH.write_text(markdown(rows, checks, data), encoding="utf-8")
    print(f"\nwrote {JSON_PATH.relative_to(ROOT)} and {MD_PATH.relative_to(ROOT)}")
    if status not in (0, 5):
        print(f"pytest exited with {status}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
