"""`TaskService` over the Qt `TaskManager`, callable from any thread (the HTTP server's).

TaskManager is a QObject that lives in the GUI (main) thread: its runners, signals and dict of
tasks are only touched there. Calls that start or stop work are queued, each with a
`concurrent.futures.Future`, for a helper object in that thread, and the caller waits for the
result with a timeout. Reads go straight to the store: every FaceStore is already used from the
pipeline's worker threads, so it must be thread-safe (SqliteStore: one connection,
check_same_thread=False, an RLock around every statement).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, Slot

from facebatch_gui.core.errors import FaceBatchError
from facebatch_gui.core.records import TaskRecord, UserEntry
from facebatch_gui.core.service import ServiceUnavailable
from facebatch_gui.core.settings import BatchSettings
from facebatch_gui.qt.runner import TaskManager

T = TypeVar("T")


class _Invoker(QObject):
    """Lives in the manager's thread and runs the jobs queued for it there.

    Woken by `QMetaObject.invokeMethod(..., QueuedConnection)` rather than by emitting a signal:
    with PySide6 6.12.0 every `Signal.emit()` drops a reference to `True` (measured: -1 per emit,
    direct or queued), so a signal per HTTP call would end the process with "bool_dealloc" after
    a few thousand calls. invokeMethod leaves the reference counts alone.
    """

    def __init__(self) -> None:
        super().__init__()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[Any]]] = (
            queue.SimpleQueue()
        )

    def submit(self, fn: Callable[[], object], future: Future[Any]) -> None:
        self._jobs.put((fn, future))
        QMetaObject.invokeMethod(self, "_drain", Qt.ConnectionType.QueuedConnection)

    @Slot()
    def _drain(self) -> None:
        while True:
            try:
                fn, future = self._jobs.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue  # the caller gave up before the job ran: do nothing
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed on to the caller's thread
                future.set_exception(exc)


class QtTaskService:
    """The HTTP endpoint's door to the one TaskManager that the GUI or `facebatch serve` owns."""

    def __init__(self, manager: TaskManager, *, timeout_s: float = 30.0) -> None:
        self.manager = manager
        self.timeout_s = timeout_s
        self._invoker = _Invoker()
        self._invoker.moveToThread(manager.thread())
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Refuse new calls and release callers still waiting (they get ServiceUnavailable)."""
        with self._lock:
            self._closed = True
            pending = list(self._pending)
        for future in pending:
            future.cancel()

    def _call(self, fn: Callable[[], T]) -> T:
        if QThread.currentThread() is self.manager.thread():
            return fn()  # already on the manager's thread: queuing would deadlock
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise ServiceUnavailable("The task manager is shutting down")
            self._pending.add(future)
        try:
            self._invoker.submit(fn, future)
            try:
                return future.result(self.timeout_s)
            except FutureTimeout:
                if future.cancel():
                    raise ServiceUnavailable(
                        f"The task manager did not answer within {self.timeout_s:g} s"
                    ) from None
                return future.result()  # it started just now: let it finish
            except CancelledError:
                raise ServiceUnavailable("The task manager is shutting down") from None
        finally:
            with self._lock:
                self._pending.discard(future)

    def start_register(self, entries: Sequence[UserEntry], settings: BatchSettings) -> str:
        try:
            return self._call(lambda: self.manager.start_register(entries, settings))
        except ServiceUnavailable:
            raise
        except FaceBatchError as exc:  # no model pack, pack cannot load
            raise ServiceUnavailable(str(exc)) from exc

    def start_delete(self, entries: Sequence[UserEntry], settings: BatchSettings) -> str:
        return self._call(lambda: self.manager.start_delete(entries, settings))

    def get_task(self, task_id: str) -> TaskRecord | None:
        return self.manager.store.get_task(task_id)

    def list_tasks(self, limit: int = 50) -> list[TaskRecord]:
        return self.manager.store.list_tasks(limit)

    def cancel(self, task_id: str) -> bool:
        def run() -> bool:
            runner = self.manager.runners.get(task_id)
            if runner is None or not runner.running:
                return False
            self.manager.cancel(task_id)
            return True

        return self._call(run)

    def running_count(self) -> int:
        return self._call(lambda: sum(1 for r in self.manager.runners.values() if r.running))
