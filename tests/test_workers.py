"""The thread-pool workers on a real Qt event loop: signals, coalescing, errors, quitting."""

from __future__ import annotations

import time
from collections.abc import Iterator

from PySide6.QtCore import QThreadPool

from facebatch_gui.qt.workers import FunctionWorker, GeneratorWorker


def _run(qtbot, worker, pool: QThreadPool) -> None:
    with qtbot.waitSignal(worker.signals.finished, timeout=10_000):
        pool.start(worker)
    assert pool.waitForDone(5_000)


def test_generator_values_are_coalesced_into_few_emissions(qtbot) -> None:
    pool = QThreadPool()
    worker = GeneratorWorker(iter(range(5000)), interval_s=0.05)
    batches: list[list[int]] = []
    worker.signals.yielded.connect(batches.append)
    _run(qtbot, worker, pool)
    flat = [v for batch in batches for v in batch]
    assert flat == list(range(5000))
    assert len(batches) < 50


def test_idle_ticks_flush_pending_values_without_waiting(qtbot) -> None:
    """A value followed by a long quiet spell must not wait for the next value."""

    def gen() -> Iterator[int | None]:
        yield 1
        time.sleep(0.12)
        yield 2  # emitted at once: the interval has passed
        yield 3
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            time.sleep(0.02)
            yield None  # idle ticks
        yield 4

    pool = QThreadPool()
    worker = GeneratorWorker(gen(), interval_s=0.1)
    arrivals: list[tuple[float, list[int]]] = []
    start = time.monotonic()
    worker.signals.yielded.connect(lambda b: arrivals.append((time.monotonic() - start, b)))
    _run(qtbot, worker, pool)
    values = [v for _, batch in arrivals for v in batch]
    assert values == [1, 2, 3, 4]
    t3 = next(t for t, batch in arrivals if 3 in batch)
    assert t3 < 0.8, f"value 3 waited {t3:.2f} s for a flush"


def test_errors_are_reported_and_pending_values_kept(qtbot) -> None:
    def gen() -> Iterator[int]:
        yield 1
        raise ValueError("boom")

    pool = QThreadPool()
    worker = GeneratorWorker(gen(), interval_s=10)
    errors: list[BaseException] = []
    values: list[int] = []
    worker.signals.errored.connect(errors.append)
    worker.signals.yielded.connect(values.extend)
    _run(qtbot, worker, pool)
    assert values == [1]
    assert len(errors) == 1
    assert str(errors[0]) == "boom"


def test_quit_closes_the_generator(qtbot) -> None:
    closed = []

    def gen() -> Iterator[int]:
        try:
            i = 0
            while True:
                i += 1
                time.sleep(0.005)
                yield i
        finally:
            closed.append(True)

    pool = QThreadPool()
    worker = GeneratorWorker(gen(), interval_s=0.05)
    with qtbot.waitSignal(worker.signals.yielded, timeout=5_000):
        pool.start(worker)
    with qtbot.waitSignal(worker.signals.finished, timeout=5_000):
        worker.quit()
    assert pool.waitForDone(5_000)
    assert closed == [True]


def test_function_worker_signals_in_order(qtbot) -> None:
    pool = QThreadPool()
    seen: list[str] = []
    worker = FunctionWorker(lambda: seen.append("ran"))
    worker.signals.started.connect(lambda: seen.append("started"))
    worker.signals.finished.connect(lambda: seen.append("finished"))
    _run(qtbot, worker, pool)
    assert seen[-1] == "finished"
    assert "ran" in seen
    failing = FunctionWorker(lambda: 1 / 0)
    errors: list[BaseException] = []
    failing.signals.errored.connect(errors.append)
    _run(qtbot, failing, pool)
    assert isinstance(errors[0], ZeroDivisionError)
