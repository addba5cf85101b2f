"""Measure how long the GUI thread's event loop goes without running while a batch runs."""

from __future__ import annotations

import time
from dataclasses import dataclass

from PySide6.QtCore import QCoreApplication, QTimer


@dataclass
class StallStats:
    elapsed_s: float
    beats: int
    worst_s: float
    p99_s: float
    flushes: int
    saw_rate: bool
    worst_at_s: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.elapsed_s:.1f} s, {self.beats} heartbeats, max event-loop stall "
            f"{self.worst_s * 1000:.1f} ms ({self.worst_at_s:.2f} s in), "
            f"p99 {self.p99_s * 1000:.1f} ms, "
            f"{self.flushes} table flushes"
        )


def measure_stall(qtbot: object | None, window: object, timeout_s: float = 300.0) -> StallStats:
    """Start a register batch on `window` (a MainWindow) and time a 5 ms heartbeat until it ends.

    With `qtbot` None the loop is driven by processEvents (for the benchmark script)."""
    gaps: list[float] = []
    at: list[float] = []
    last = [0.0]
    rates: list[str] = []

    def beat() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        at.append(last[0])
        last[0] = now
        if "img/s" in window.rate_label.text():  # type: ignore[attr-defined]
            rates.append(window.rate_label.text())  # type: ignore[attr-defined]

    heartbeat = QTimer()
    heartbeat.setInterval(5)
    heartbeat.timeout.connect(beat)
    started = time.perf_counter()
    task_id = window.register()  # type: ignore[attr-defined]
    assert task_id is not None
    last[0] = time.perf_counter()
    heartbeat.start()
    tasks = window.tasks  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout_s
    if qtbot is not None:
        qtbot.waitUntil(lambda: not tasks.running_tasks(), timeout=int(timeout_s * 1000))  # type: ignore[attr-defined]
    else:
        while tasks.running_tasks() and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.001)
    heartbeat.stop()
    window.model.flush()  # type: ignore[attr-defined]
    ordered = sorted(gaps)
    worst_at = at[gaps.index(ordered[-1])] - started if ordered else 0.0
    return StallStats(
        elapsed_s=time.perf_counter() - started,
        beats=len(gaps),
        worst_s=ordered[-1] if ordered else 0.0,
        p99_s=ordered[int(len(ordered) * 0.99)] if ordered else 0.0,
        flushes=window.model.flushes,  # type: ignore[attr-defined]
        saw_rate=bool(rates),
        worst_at_s=worst_at,
    )
