"""Regression scripts from the correctness review: each reproduces one way a cache could answer
differently from the database (stale rows, a missed write, a changed transaction state) and prints
``ok`` or ``BUG`` per case after comparing the wrapped answer with the uncached database.

They run as separate processes against the real PostgreSQL, MariaDB and sqlite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_database

CASES = Path(__file__).parent / "review_cases"
SCRIPTS = sorted(p.name for p in CASES.glob("*.py") if p.name not in ("__init__.py", "h.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_review_case(script: str, tmp_path: Path) -> None:
    needs = "postgres" if "_pg_" in script else "mysql" if "_mysql" in script else None
    if needs:
        make_database(needs, tmp_path)  # skips locally / fails under CI when the server is down
    done = subprocess.run([sys.executable, script], cwd=CASES, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    verdicts = [line for line in done.stdout.splitlines() if line.startswith(("ok  ", "BUG "))]
    assert verdicts, f"{script} printed no verdict:\n{done.stdout}\n{done.stderr}"
    bugs = [line for line in verdicts if line.startswith("BUG ")]
    assert not bugs, "\n".join(bugs)


def test_every_script_is_collected() -> None:
    assert len(SCRIPTS) >= 12
