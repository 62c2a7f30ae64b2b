"""Progress of a schema's generation: a rich progress bar on a terminal; numbered lines, one per
step with its share of the rows and its duration, when the output is a file or a pipe (a bar
redrawn with carriage returns would fill a log with noise)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

from querycache.benchmark.schema import Step


class GenerationProgress:
    """``with GenerationProgress(steps) as progress: ... progress.done(step, seconds)`` for each
    step in order. The bar advances by rows inserted (DDL, indexes and statistics count as no rows,
    their names show while they run)."""

    def __init__(self, steps: list[Step], stream: TextIO | None = None) -> None:
        self.steps = steps
        self.stream = stream if stream is not None else sys.stdout
        self.total_rows = sum(s.rows for s in steps)
        self.rows = 0
        self.index = 0
        self.started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> GenerationProgress:
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("  {task.description:<40}"), BarColumn(),
                                 TextColumn("{task.completed:>10,.0f} / {task.total:,.0f} rows"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(file=self.stream))
            self._bar.start()
            self._task = self._bar.add_task(self._next_label(), total=max(1, self.total_rows))
        return self

    def _next_label(self) -> str:
        return self.steps[self.index].label if self.index < len(self.steps) else "done"

    def done(self, step: Step, seconds: float) -> None:
        self.rows += step.rows
        self.index += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self.rows, description=self._next_label())
            return
        share = f"{self.rows / self.total_rows:4.0%}" if self.total_rows else "   -"
        print(f"  [{self.index:>{len(str(len(self.steps)))}}/{len(self.steps)} {share}] {step.label} "
              f"({seconds:.1f} s)", file=self.stream, flush=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
