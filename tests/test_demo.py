"""`querycache demo` as a user runs it (a real subprocess, the short mode): every tier answers, on
the embedded default and on Redis across two processes; every answer is checked by the demo itself
against the database, and the stampede's executions are counted by sqlite's own trace."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.backends.test_redis import REDIS_URL, _redis_up

TIERS = ("L1", "L2", "L3", "coalesced")


def _demo(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{prelude}\nfrom querycache.cli import main\nmain()"
    return subprocess.run([sys.executable, "-c", code, "demo", "--quick", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})


def _counts(text: str) -> dict[str, int]:
    line = next(line for line in text.splitlines() if line.startswith("answers by tier"))
    return {name: int(n) for name, n in re.findall(r"(L1|L2|L3|coalesced|database|writes) (\d+)", line)}


def _check(data: dict[str, Any], text: str, out: Path) -> None:
    assert data["stale_reads"] == 0
    answers = data["answers"]
    assert all(answers[tier.lower()] > 0 for tier in TIERS), answers
    assert answers["database"] > 0 and answers["bypass"] > 0
    assert data["stampede"]["executions"] == 1  # counted by sqlite's trace, not by the cache
    assert data["stampede"]["uncached_executions"] == data["stampede"]["callers"]
    assert data["write_then_read"]["cached_status_before"] == "hit:L1"
    assert data["write_then_read"]["fresh"] and data["write_then_read"]["status_after"] == "miss"
    assert data["write_then_read"]["after"] == data["write_then_read"]["before"] + 1
    assert data["speedup"] > 0
    # The text the user reads names every tier with a non-zero count, and says 0 stale.
    counts = _counts(text)
    assert all(counts[tier] > 0 for tier in TIERS), counts
    assert "stale answers    0 " in text
    assert (out / "demo.txt").read_text() == text
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run_both(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path / "out"
    as_json = _demo("--out", str(out), "--json", *args)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    text = (out / "demo.txt").read_text()
    plain = _demo("--out", str(tmp_path / "again"), *args)
    assert plain.returncode == 0, plain.stderr
    assert "answers by tier" in plain.stdout and str(tmp_path / "again" / "demo.png") in plain.stdout
    return data, text, out


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="L3 needs FAISS (the 'semantic' extra)")
def test_demo_on_the_embedded_default_shows_every_tier(tmp_path: Path) -> None:
    data, text, out = _run_both(tmp_path)
    assert data["backend"] == "memory" and data["processes"] == 1
    assert data["l3"].startswith("on")
    _check(data, text, out)


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="L3 needs FAISS (the 'semantic' extra)")
def test_demo_on_redis_in_two_processes_shows_every_tier(tmp_path: Path) -> None:
    _redis_up(REDIS_URL)
    data, text, out = _run_both(tmp_path, "--redis", REDIS_URL)
    assert data["backend"] == "redis" and data["processes"] == 2
    assert data["write_then_read"]["writer"] == "the other process"
    _check(data, text, out)


def test_demo_without_the_semantic_extra_says_so_and_runs_the_rest(tmp_path: Path) -> None:
    result = _demo("--out", str(tmp_path), prelude="import sys; sys.modules['faiss'] = None")
    assert result.returncode == 0, result.stderr
    assert "L3 was off: the semantic extra is not installed" in result.stdout
    assert "pip install 'querycache[l3]'" in result.stdout
    counts = _counts(result.stdout)
    assert counts["L3"] == 0 and all(counts[tier] > 0 for tier in ("L1", "L2", "coalesced")), counts
    assert "stale answers    0 " in result.stdout


def test_demo_without_matplotlib_skips_the_picture(tmp_path: Path) -> None:
    result = _demo("--out", str(tmp_path), "--statements", "300",
                   prelude="import sys; sys.modules['matplotlib'] = None")
    assert result.returncode == 0, result.stderr
    assert "picture          skipped: matplotlib is not installed" in result.stdout
    assert not (tmp_path / "demo.png").exists() and (tmp_path / "demo.txt").exists()


def test_demo_rejects_a_bad_redis_url() -> None:
    result = _demo("--redis", "http://example.com")
    assert result.returncode == 2 and "--redis" in result.stderr and "redis://" in result.stderr
