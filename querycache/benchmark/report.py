"""The workload benchmark's report: a Markdown table and PNG figures (matplotlib, Agg backend).

matplotlib is imported only when a figure is drawn; without it the run still writes the JSON and
the Markdown, which say that no figure was drawn and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from querycache.benchmark.worker import CONTENDERS, PER_PROCESS, QC, READ_KINDS, is_cached

FIGURE = "workload.png"
SCALING_FIGURE = "workload_scaling.png"


def _fmt(x: Any, nd: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _order(names: set[str]) -> list[str]:
    """Contenders in their declared order (the order they run in)."""
    return [c for c in CONTENDERS if c in names] + sorted(names - set(CONTENDERS))


def _tiers(r: dict[str, Any]) -> str:
    q = r.get("querycache")
    if not q:
        return "-"
    cells = [f"{q.get('l1_hit_ratio', 0):.1%}", f"{q.get('l2_hit_ratio', 0):.1%}"]
    if "l3_hit_ratio" in q or r["contender"].endswith("-l3"):
        cells.append(f"{q.get('l3_hit_ratio', 0):.1%}")
    return " / ".join(cells)


def _rewritten(r: dict[str, Any]) -> str:
    statuses = r.get("rewritten_statuses", {})
    total = sum(statuses.values())
    if not total:
        return "-"
    return f"{sum(n for k, n in statuses.items() if is_cached(k)) / total:.1%}"


def _stale(r: dict[str, Any]) -> str:
    stale = f"{r['stale_reads']} / {r['checked_cached_reads']:,}"
    ages = r.get("stale_age_s", {}).get("all", {})
    if ages.get("n"):
        stale += f"; age p50 {ages['p50']} s, p99 {ages['p99']} s, max {ages['max']} s"
        if r.get("staleness_bound_s"):
            stale += f" (bound {max(r['staleness_bound_s'].values())} s)"
        elif r["contender"] not in QC:
            stale += " (unbounded)"
    if r["stale_reads_from_db"]:
        stale += f" (+{r['stale_reads_from_db']} from DB!)"
    if r["contender"] in PER_PROCESS and r["processes"] > 1:
        stale += " (per-process store: not shared by the processes, as documented)"
    return stale


def _sweep_cell(r: dict[str, Any]) -> str:
    cell = _fmt(r["throughput_ops_s"])
    if r["stale_reads"] or r["errors"]:
        cell += f" ({r['stale_reads']} stale, {r['errors']} errors)"
    return cell


def bound(config: dict[str, Any], what: str = "contender") -> str:
    """How long each measurement ran: a duration or a count of operations."""
    if config.get("bound") == "ops":
        return f"{config['ops']:,} operations per {what} (count-bounded)"
    seconds = config["duration_s"] if what == "contender" else config["sweep_duration_s"]
    return f"{seconds} s per {what} (duration-bounded)"


def database(meta: dict[str, Any]) -> str:
    """The database and its version (runs from before --database ran on PostgreSQL)."""
    if "database" in meta:
        return f"{meta['database']['label']} {meta['database']['version']}"
    return f"PostgreSQL {meta['versions']['postgres']}"


def markdown(meta: dict[str, Any], results: list[dict[str, Any]], sweep: list[dict[str, Any]],
             scale_sweep: list[dict[str, Any]], figures: list[str], figure_note: str) -> str:
    c = meta["config"]
    lines = [
        f"Workload: {meta['rows_total']:,} rows ({meta['rows']}), {c['threads']} threads x {c['processes']} "
        f"process(es), {bound(c)}, Zipf s={c['zipf_s']}, writes {c['write_ratio']:.1%} "
        f"of operations, {c.get('rewrite_share', 0.0):.0%} of reads as rewritten texts, seed {c['seed']}, "
        f"TTL {c['ttl_s']} s for the TTL caches; {database(meta)}, "
        f"Redis {meta['versions']['redis']}, {meta['machine']['cpus']} CPUs. Contenders ran one after another.",
        "",
        "| contender | ops/s | read p50 ms | p95 ms | p99 ms | reads from cache | rewritten reads from cache "
        "| L1 / L2 (/ L3) hits | DB statements | PG table scans | stale reads / checked from cache | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lat = r["read_latency_ms"]
        lines.append(
            f"| {r['contender']} | {_fmt(r['throughput_ops_s'])} | {_fmt(lat['p50'], 2)} | {_fmt(lat['p95'], 2)} "
            f"| {_fmt(lat['p99'], 2)} | {r['cache_answered_ratio']:.1%} | {_rewritten(r)} | {_tiers(r)} "
            f"| {_fmt(r['db_statements'])} | {_fmt(r['pg_table_scans'])} | {_stale(r)} "
            f"| {r['errors'] + r['hung_threads']} |")
    kinds = [k for k in READ_KINDS if any(r.get("checked_cached_reads_by_kind", {}).get(k) for r in results)]
    if kinds:
        lines += ["", "Stale reads served / reads checked, per read kind (answered from a cache):", "",
                  "| contender | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
        for r in results:
            checked, stale = r.get("checked_cached_reads_by_kind", {}), r.get("stale_reads_by_kind", {})
            lines.append(f"| {r['contender']} | "
                         + " | ".join(f"{stale.get(k, 0):,} / {checked.get(k, 0):,}" for k in kinds) + " |")
    if sweep:
        names = _order({s["contender"] for s in sweep})
        lines += ["", f"Throughput vs threads (1 process, {bound(c, 'cell')}; ops/s):", "",
                  "| threads | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
        for n in sorted({s["threads"] for s in sweep}):
            row = {s["contender"]: s for s in sweep if s["threads"] == n}
            lines.append(f"| {n} | " + " | ".join(_sweep_cell(row[k]) if k in row else "-" for k in names) + " |")
    if scale_sweep:
        names = _order({s["contender"] for s in scale_sweep})
        first = scale_sweep[0]
        lines += ["", f"Throughput vs data scale ({first['threads']} threads, {bound(c, 'cell')}; ops/s):", "",
                  "| scale | rows | " + " | ".join(names) + " |", "|---:|---:|" + "---:|" * len(names)]
        for scale in sorted({s["scale"] for s in scale_sweep}):
            row = {s["contender"]: s for s in scale_sweep if s["scale"] == scale}
            rows = next(iter(row.values()))["rows_total"]
            lines.append(f"| {scale:g} | {rows:,} | "
                         + " | ".join(_sweep_cell(row[k]) if k in row else "-" for k in names) + " |")
    lines += ["", "Stale read: a read answered from a cache whose `version` (or, for aggregates, sum of versions) is "
              "older than the versions of writes whose commit had returned before the read started. "
              "`uncached` reads are checked too (a checker self-test: must be 0). "
              "PG table scans: seq + index scans on the workload's tables (pg_stat_user_tables delta; "
              "PostgreSQL only, \"-\" elsewhere). "
              + (f"Figures: {', '.join(figures)}." if figures else figure_note)]
    if meta.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(meta["skipped"])]
    if meta.get("notes"):
        lines += ["", "Notes: " + "; ".join(meta["notes"])]
    if meta.get("failures"):
        lines += ["", "FAILED: " + "; ".join(meta["failures"])]
    return "\n".join(lines) + "\n"


# -- figures --------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(names: list[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    known = list(CONTENDERS)
    return {n: cmap((known.index(n) if n in known else len(known) + i) % 10) for i, n in enumerate(names)}


def _log_y(ax: Any) -> None:
    """A log y axis labelled 1, 2, 5, 10, 20... (plain numbers, whatever the range)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.10g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _subtitle(meta: dict[str, Any]) -> str:
    c = meta["config"]
    each = f"{c['ops']:,} ops each" if c.get("bound") == "ops" else f"{c['duration_s']:g} s each"
    return (f"{database(meta)}, {meta['rows_total']:,} rows, {c['threads']} threads x {c['processes']} process(es), "
            f"{each}, Zipf s={c['zipf_s']}, {c['write_ratio']:.0%} writes, "
            f"{c.get('rewrite_share', 0.0):.0%} rewritten reads; {meta['machine']['cpus']} CPUs, "
            f"{meta['started'][:10]}")


def plot(meta: dict[str, Any], results: list[dict[str, Any]], path: Path) -> None:
    """Throughput and read p99 per contender (bars; stale reads written on the bars), and the share
    of reads answered from a cache, second by second, per contender."""
    plt = _pyplot()
    names = [r["contender"] for r in results]
    colors = _colors(names)
    fig = plt.figure(figsize=(12, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.1])
    ax_ops, ax_p99, ax_hits = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    x = range(len(results))
    ops = [r["throughput_ops_s"] or 0 for r in results]
    bars = ax_ops.bar(x, ops, color=[colors[n] for n in names])
    for bar, r in zip(bars, results, strict=True):
        label = f"{r['throughput_ops_s'] or 0:,.0f}"
        if r["stale_reads"]:
            label += f"\n{r['stale_reads']:,} stale"
        ax_ops.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=8, color="firebrick" if r["stale_reads"] else "black")
    ax_ops.set_title("throughput (operations/s; red: stale reads served)")
    ax_ops.set_ylabel("ops/s")
    ax_ops.margins(y=0.25)
    p99 = [r["read_latency_ms"]["p99"] or 0 for r in results]
    bars = ax_p99.bar(x, p99, color=[colors[n] for n in names])
    for bar, value in zip(bars, p99, strict=True):
        ax_p99.annotate(f"{value:,.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=8)
    _log_y(ax_p99)
    ax_p99.set_title("read latency p99 (ms, log scale)")
    ax_p99.set_ylabel("ms")
    ax_p99.margins(y=0.25)
    for ax in (ax_ops, ax_p99):
        ax.set_xticks(list(x), names, rotation=30, ha="right", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for r in results:
        t = r["timeline"]
        points = [(s + 0.5, h * 100) for s, h in zip(t["second"], t["hit_ratio"], strict=True) if h is not None]
        if points:
            ax_hits.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=r["contender"],
                         color=colors[r["contender"]])
    ax_hits.set_title("reads answered from a cache, per second of the run (%)")
    ax_hits.set_xlabel("seconds since the contender's start")
    ax_hits.set_ylabel("%")
    ax_hits.set_ylim(-2, 102)
    ax_hits.grid(alpha=0.3)
    ax_hits.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9)
    fig.suptitle("querycache workload benchmark\n" + _subtitle(meta), fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scaling(meta: dict[str, Any], sweep: list[dict[str, Any]], scale_sweep: list[dict[str, Any]],
                 path: Path) -> None:
    """Throughput vs threads and vs data scale, one line per contender (log scales)."""
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter
    panels = [(sweep, "threads", "threads (1 process)"), (scale_sweep, "rows_total", "rows in the schema")]
    panels = [p for p in panels if p[0]]
    names = _order({s["contender"] for p in panels for s in p[0]})
    colors = _colors(names)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), layout="constrained", squeeze=False)
    for ax, (cells, key, label) in zip(axes[0], panels, strict=True):
        for name in names:
            series = [s for s in cells if s["contender"] == name]
            points = sorted((s[key], s["throughput_ops_s"] or 0) for s in series)
            stale = any(s["stale_reads"] for s in series)  # dashed: it served stale reads
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colors[name],
                        linestyle="--" if stale else "-", label=name + (" (served stale reads)" if stale else ""))
        ax.set_xscale("log")
        _log_y(ax)
        xs = sorted({s[key] for s in cells})
        ax.set_xticks(xs, [f"{v:,}" for v in xs], fontsize=8)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("ops/s (log)")
        ax.grid(alpha=0.3)
        cell = cells[0]
        per_cell = f"{cell['ops_bound']:,} ops" if cell.get("ops_bound") else f"{cell['duration_s']:g} s"
        ax.set_title(f"throughput vs {label.split(' ')[0]} ({per_cell} per cell)")
        ax.legend(fontsize=8)
    c = meta["config"]
    fig.suptitle(f"querycache workload benchmark: scaling\n{c['write_ratio']:.0%} writes, Zipf s={c['zipf_s']}, "
                 f"{meta['machine']['cpus']} CPUs, {meta['started'][:10]}", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figures(meta: dict[str, Any], results: list[dict[str, Any]], sweep: list[dict[str, Any]],
            scale_sweep: list[dict[str, Any]], out: Path) -> tuple[list[str], str]:
    """Draw what there is to draw into ``out``; (file names written, why none when none)."""
    try:
        _pyplot()
    except ModuleNotFoundError:
        return [], "No PNG: matplotlib is not installed (pip install matplotlib)."
    written = []
    if results:
        plot(meta, results, out / FIGURE)
        written.append(FIGURE)
    if sweep or scale_sweep:
        plot_scaling(meta, sweep, scale_sweep, out / SCALING_FIGURE)
        written.append(SCALING_FIGURE)
    return written, "" if written else "No PNG: no contender finished."
