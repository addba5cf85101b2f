"""Run batch tasks on a QThreadPool and report progress to the Qt thread by coalesced signals.

`BatchRunner` dispatches one core `BatchPipeline`: its stage loops as `FunctionWorker`s and its
results generator as a `GeneratorWorker`, all on a pool sized to hold them. `TaskManager` is the one
place that creates, resumes and cancels tasks, for the CLI, the GUI and the HTTP endpoint alike.
It works headless under a QCoreApplication.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from PySide6.QtCore import QObject, QThreadPool, Signal

from facebatch_gui.core.cvcompat import scrub_cv2_qt_env
from facebatch_gui.core.engine import FaceEngine
from facebatch_gui.core.errors import FaceBatchError
from facebatch_gui.core.pipeline import BatchPipeline
from facebatch_gui.core.records import (
    ItemResult,
    Operation,
    TaskRecord,
    TaskStatus,
    UserEntry,
    new_task_id,
    utc_now,
)
from facebatch_gui.core.settings import BatchSettings
from facebatch_gui.core.store.base import FaceStore
from facebatch_gui.qt.workers import FunctionWorker, GeneratorWorker

scrub_cv2_qt_env()
T = TypeVar("T")


BATCH_THREAD_NICE = int(os.environ.get("FACEBATCH_BATCH_NICE", "5"))


def _lower_this_thread() -> None:
    """Batch threads yield the CPU to the GUI thread when cores are scarce: every GIL hand-off
    back to the GUI thread needs it to be scheduled, and with more runnable threads than cores
    the kernel otherwise picks a pipeline thread as often as the GUI. Linux renices one thread by
    its native id; elsewhere this does nothing."""
    if BATCH_THREAD_NICE and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            if current < BATCH_THREAD_NICE:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BATCH_THREAD_NICE)


def _niced(loop: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        _lower_this_thread()
        loop()

    return run


def _niced_iter(results: Iterator[T]) -> Iterator[T]:
    _lower_this_thread()
    yield from results


@dataclass(slots=True)
class TaskProgress:
    """What changed since the last report, plus running totals for progress bars."""

    task_id: str
    results: list[ItemResult]
    completed: int
    failed: int
    total: int
    elapsed_s: float
    rate: float = 0.0  # items settled per second since the start
    counts_by_code: dict[str, int] = field(default_factory=dict)


class BatchRunner(QObject):
    """Runs one pipeline; every live runner is in `instances` so tests can find stray work."""

    instances: ClassVar[weakref.WeakSet[BatchRunner]] = weakref.WeakSet()

    started = Signal(str)
    progressed = Signal(object)  # TaskProgress
    errored = Signal(str, str)  # task_id, message
    finished = Signal(str)  # task_id

    def __init__(
        self,
        pipeline: BatchPipeline,
        *,
        task_id: str,
        total: int,
        already_completed: int = 0,
        already_failed: int = 0,
        interval_s: float = 0.1,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.pipeline = pipeline
        self.task_id = task_id
        self.total = total
        self.completed = already_completed
        self.failed = already_failed
        self.counts_by_code: dict[str, int] = {}
        self._interval_s = interval_s
        self._pool = QThreadPool(self)
        self._workers: list[FunctionWorker | GeneratorWorker] = []
        self._started_at = 0.0
        self._settled_here = 0
        self.running = False
        self.error: str | None = None
        BatchRunner.instances.add(self)

    def start(self) -> None:
        loops = self.pipeline.stage_loops()
        self._pool.setMaxThreadCount(len(loops) + 1)
        settle = GeneratorWorker(
            _niced_iter(self.pipeline.results(idle_ticks=True)), interval_s=self._interval_s
        )
        settle.signals.yielded.connect(self._on_yielded)
        settle.signals.errored.connect(self._on_errored)
        settle.signals.finished.connect(self._on_finished)
        self._workers = [settle, *(FunctionWorker(_niced(loop)) for loop in loops)]
        self._started_at = time.monotonic()
        self.running = True
        self.started.emit(self.task_id)
        for worker in self._workers:
            self._pool.start(worker)

    def cancel(self) -> None:
        self.pipeline.cancel()

    def wait(self, msecs: int = -1) -> bool:
        """Block until every worker of this task has returned (tests, shutdown)."""
        return self._pool.waitForDone(msecs)

    def active_threads(self) -> int:
        try:
            return self._pool.activeThreadCount()
        except RuntimeError:  # the pool's C++ side is gone, and its destructor waited for done
            return 0

    def _on_yielded(self, results: list[ItemResult]) -> None:
        for result in results:
            self.completed += 1
            self._settled_here += 1
            if not result.status:
                self.failed += 1
                code = str(result.error_code)
                self.counts_by_code[code] = self.counts_by_code.get(code, 0) + 1
        elapsed = time.monotonic() - self._started_at
        self.progressed.emit(
            TaskProgress(
                task_id=self.task_id,
                results=results,
                completed=self.completed,
                failed=self.failed,
                total=self.total,
                elapsed_s=elapsed,
                rate=self._settled_here / elapsed if elapsed > 0 else 0.0,
                counts_by_code=dict(self.counts_by_code),
            )
        )

    def _on_errored(self, exc: BaseException) -> None:
        self.error = str(exc)
        self.errored.emit(self.task_id, self.error)

    def _on_finished(self) -> None:
        self.running = False
        self.finished.emit(self.task_id)


class TaskManager(QObject):
    """Creates tasks in the store and runs them; the only door to batch work for every front end."""

    taskStarted = Signal(str)
    taskProgressed = Signal(object)  # TaskProgress
    taskErrored = Signal(str, str)
    taskFinished = Signal(str)

    def __init__(
        self,
        store: FaceStore,
        engine: FaceEngine | Callable[[], FaceEngine] | None = None,
        *,
        interval_s: float = 0.1,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self._engine = engine
        self._interval_s = interval_s
        self.runners: dict[str, BatchRunner] = {}

    def engine(self) -> FaceEngine:
        if self._engine is None:
            raise FaceBatchError("No face model pack is loaded")
        if not isinstance(self._engine, FaceEngine):
            self._engine = self._engine()
        return self._engine

    def set_engine(self, engine: FaceEngine | Callable[[], FaceEngine] | None) -> None:
        """Tasks already running keep the engine they started with."""
        self._engine = engine

    def has_engine(self) -> bool:
        return isinstance(self._engine, FaceEngine)

    def running_tasks(self) -> list[str]:
        return [task_id for task_id, runner in self.runners.items() if runner.running]

    def start_register(self, entries: Sequence[UserEntry], settings: BatchSettings) -> str:
        record = self.store.create_task(
            Operation.REGISTER, entries, settings.model_dump(mode="json")
        )
        return self._launch(record, settings, list(enumerate(entries)))

    def start_delete(self, entries: Sequence[UserEntry], settings: BatchSettings) -> str:
        record = self.store.create_task(Operation.DELETE, entries, settings.model_dump(mode="json"))
        return self._launch(record, settings, list(enumerate(entries)))

    def start_validate(self, entries: Sequence[UserEntry], settings: BatchSettings) -> str:
        """A dry run: every step but the writes; the task lives only in this manager."""
        record = TaskRecord(
            task_id=new_task_id(),
            status=TaskStatus.PROCESSING,
            total_items=len(entries),
            created_at=utc_now(),
            updated_at=utc_now(),
        )
        return self._launch(record, settings, list(enumerate(entries)), dry_run=True)

    def resume(self, task_id: str) -> str:
        record = self.store.get_task(task_id, with_results=False)
        if record is None:
            raise FaceBatchError(f"No task {task_id}")
        if task_id in self.runners and self.runners[task_id].running:
            raise FaceBatchError(f"Task {task_id} is already running")
        if not record.status.is_resumable:
            raise FaceBatchError(
                f"Task {task_id} is {record.status.value}; only interrupted, cancelled or failed "
                "tasks can be resumed"
            )
        settings = BatchSettings.model_validate(self.store.task_options(task_id))
        items = self.store.unfinished_items(task_id)
        # Cancelled items count as settled and failed in the record but run again now.
        done = record.total_items - len(items)
        failed_before = record.failed_items - (record.completed_items - done)
        return self._launch(record, settings, items, done, max(0, failed_before))

    def cancel(self, task_id: str) -> None:
        runner = self.runners.get(task_id)
        if runner is not None:
            runner.cancel()

    def get(self, task_id: str) -> TaskRecord | None:
        return self.store.get_task(task_id)

    def wait_all(self, msecs: int = -1) -> bool:
        return all(runner.wait(msecs) for runner in list(self.runners.values()))

    def _launch(
        self,
        record: TaskRecord,
        settings: BatchSettings,
        items: list[tuple[int, UserEntry]],
        already_completed: int = 0,
        already_failed: int = 0,
        *,
        dry_run: bool = False,
    ) -> str:
        engine = self.engine() if record.operation == Operation.REGISTER else None
        pipeline = BatchPipeline(
            operation=record.operation,
            items=items,
            store=self.store,
            engine=engine,
            settings=settings,
            task_id=record.task_id,
            dry_run=dry_run,
        )
        runner = BatchRunner(
            pipeline,
            task_id=record.task_id,
            total=record.total_items,
            already_completed=already_completed,
            already_failed=already_failed,
            interval_s=self._interval_s,
            parent=self,
        )
        runner.started.connect(self.taskStarted)
        runner.progressed.connect(self.taskProgressed)
        runner.errored.connect(self.taskErrored)
        runner.finished.connect(self.taskFinished)
        self.runners[record.task_id] = runner
        runner.start()
        return record.task_id
