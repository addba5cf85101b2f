"""QRunnable workers whose signals live on a separate QObject, after superqt's thread workers.

Signals are past tense (`started`, `yielded`, `errored`, `finished`) and cross threads as queued
connections. `GeneratorWorker` coalesces what its generator yields into lists emitted at most every
`interval_s`, so a fast producer never floods the receiving event loop; a generator may yield None
when it is idle, which flushes what is pending without adding anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from PySide6.QtCore import QObject, QRunnable, Signal


class WorkerSignals(QObject):
    started = Signal()
    yielded = Signal(object)  # a list of the values yielded since the last emission
    errored = Signal(object)  # the exception
    finished = Signal()


class FunctionWorker(QRunnable):
    def __init__(self, func: Callable[[], object]) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the runner owns workers, so their signals outlive run()
        self._func = func
        self.signals = WorkerSignals()

    def run(self) -> None:
        self.signals.started.emit()
        try:
            self._func()
        except Exception as exc:  # noqa: BLE001 - reported through `errored`
            self.signals.errored.emit(exc)
        finally:
            self.signals.finished.emit()


class GeneratorWorker(QRunnable):
    def __init__(self, generator: Iterator[object], *, interval_s: float = 0.1) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the runner owns workers, so their signals outlive run()
        self._generator = generator
        self._interval_s = interval_s
        self._abort = threading.Event()
        self.signals = WorkerSignals()

    def quit(self) -> None:
        """Stop at the next yield; the generator is closed, running its cleanup."""
        self._abort.set()

    def run(self) -> None:
        self.signals.started.emit()
        pending: list[object] = []
        last = time.monotonic()
        try:
            for value in self._generator:
                if value is not None:
                    pending.append(value)
                now = time.monotonic()
                if pending and now - last >= self._interval_s:
                    self.signals.yielded.emit(pending)
                    pending, last = [], now
                if self._abort.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - reported through `errored`
            if pending:
                self.signals.yielded.emit(pending)
                pending = []
            self.signals.errored.emit(exc)
        finally:
            close = getattr(self._generator, "close", None)
            if close is not None:
                close()
            if pending:
                self.signals.yielded.emit(pending)
            self.signals.finished.emit()
