"""Live progress for long loops, a line every few seconds: training (through the ``Trainer`` callback in
:mod:`distillery.training`) and the batched inference passes (the teacher's logits, evaluation), so a
stage that runs for minutes is never silent in the terminal or in a Prefect run's logs.

An inference loop iterates :func:`batches`; it reports only inside :func:`reporting`, which the stage
opens with what the pass is (``"teacher on 20,000 transfer rows"``): a task type's ``predict`` needs no
progress argument, and a pass nobody labelled (a test, the ONNX parity check) stays quiet.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from typing import Callable, Iterator, Optional, TextIO

PROGRESS_SECONDS_ENV = "DISTILLERY_PROGRESS_SECONDS"  # seconds between progress lines (default 10; 0: every step)


def progress_interval() -> float:
    try:
        return max(0.0, float(os.environ.get(PROGRESS_SECONDS_ENV, "10")))
    except ValueError:
        return 10.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressLine:
    """At most one line every ``interval`` seconds: steps done of the total, epoch, elapsed and time left, and the
    last training loss. Written to ``stream`` (stderr), so the terminal and a Prefect run's logs see training move
    without one line per step. The time left is from the mean time per step since the first step ended: the first
    one also holds the set-up (the first batch, memory) and made the first line's estimate minutes too long."""

    def __init__(self, label: str, interval: float, stream: Optional[TextIO] = None,
                 clock: Callable[[], float] = time.monotonic, unit: str = "step"):
        self.label, self.interval, self.stream, self.clock, self.unit = label, interval, stream, clock, unit
        self.started = self.last = clock()
        self.last_step: Optional[int] = None
        self.first: Optional[tuple[int, float]] = None  # the first step seen, and when

    def line(self, step: int, total: int, epoch: Optional[float], epochs: float, loss: Optional[float]) -> str:
        now = self.clock()
        elapsed = now - self.started
        first, at = self.first or (0, self.started)
        if step <= first:  # nothing since the first step: the mean over it
            first, at = 0, self.started
        left = (now - at) / (step - first) * (total - step) if step > first else 0.0
        parts = [f"{self.label}: {self.unit} {step:,}/{total:,} ({100 * step / max(total, 1):.0f}%)"]
        if epoch is not None:
            parts.append(f"epoch {epoch:.2f}/{epochs:g}")
        parts.append(f"{_duration(elapsed)} elapsed, about {_duration(left)} left")
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        return ", ".join(parts)

    def update(self, step: int, total: int, epoch: Optional[float], epochs: float, loss: Optional[float],
               force: bool = False) -> Optional[str]:
        """The line, written, if ``interval`` seconds have passed since the last one (or ``force``) and the
        step is not the one the last line showed; else None."""
        now = self.clock()
        if self.first is None:
            self.first = (step, now)
        if step == self.last_step or (not force and now - self.last < self.interval):
            return None
        self.last, self.last_step = now, step
        text = self.line(step, total, epoch, epochs, loss)
        stream = self.stream or sys.stderr
        print(text, file=stream, flush=True)
        return text


_LABEL: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("distillery_progress_label", default=None)


@contextlib.contextmanager
def reporting(label: str) -> Iterator[None]:
    """Loops over :func:`batches` inside this block report as ``label``."""
    token = _LABEL.set(label)
    try:
        yield
    finally:
        _LABEL.reset(token)


def batches(total: int, batch_size: int, stream: Optional[TextIO] = None,
            clock: Callable[[], float] = time.monotonic) -> Iterator[int]:
    """``range(0, total, batch_size)``; inside :func:`reporting`, a :class:`ProgressLine` (unit "batch")
    every ``$DISTILLERY_PROGRESS_SECONDS`` and a last line when the pass ends, if it took more than one."""
    label = _LABEL.get()
    count = -(-total // batch_size) if batch_size > 0 else 0
    progress = ProgressLine(label, progress_interval(), stream, clock, unit="batch") if label else None
    for done, start in enumerate(range(0, total, batch_size)):
        yield start
        if progress is not None:
            progress.update(done + 1, count, None, 0, None, force=done + 1 == count and progress.last_step is not None)
