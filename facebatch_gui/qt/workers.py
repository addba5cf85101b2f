"""QRunnable workers whose signals live on a separate QObject, after superqt's thread workers.

Signals are past tense (`started`, `yielded`, `errored`, `finished`) and cross threads as queued
connections. `GeneratorWorker` coalesces what its generator yields into lists emitted at most every
`interval_s`, so a fast producer never floods the receiving event loop; a generator may yield None
when it is idle, which flushes what is pending without adding anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


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


_OnDone = Callable[[Any], None]
_OnError = Callable[[Exception], None]


class _JobSignals(QObject):
    done = Signal(object, object)  # token, value
    failed = Signal(object, object)  # token, exception


class JobRunner(QObject):
    """Runs small one-off jobs (load models, read thumbnails) on its own pool and hands each
    result to a callback in the thread this object lives in (the GUI thread)."""

    def __init__(self, *, max_threads: int = 2, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._signals = _JobSignals(self)
        self._signals.done.connect(self._done)
        self._signals.failed.connect(self._failed)
        self._seq = 0
        self._pending: dict[
            int, tuple[FunctionWorker, Callable[[Any], None], Callable[[Exception], None]]
        ] = {}

    def run(
        self,
        func: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._seq += 1
        token, signals = self._seq, self._signals

        def body() -> None:
            try:
                value = func()
            except Exception as exc:  # noqa: BLE001 - delivered to on_error in the owner's thread
                signals.failed.emit(token, exc)
            else:
                signals.done.emit(token, value)

        worker = FunctionWorker(body)
        self._pending[token] = (worker, on_done, on_error or _log_error)
        self._pool.start(worker)

    def active(self) -> int:
        return self._pool.activeThreadCount()

    def wait(self, msecs: int = 10_000) -> bool:
        return self._pool.waitForDone(msecs)

    def _done(self, token: int, value: object) -> None:
        entry = self._pending.pop(token, None)
        if entry is not None:
            entry[1](value)

    def _failed(self, token: int, exc: object) -> None:
        entry = self._pending.pop(token, None)
        if entry is not None and isinstance(exc, Exception):
            entry[2](exc)


def _log_error(exc: Exception) -> None:
    logging.getLogger("facebatch").error("%s", exc)
