"""Run one model-pack operation off the GUI thread, for the Models and first-run dialogs.

`PackJob` wraps a `core.packs.PackManager` call on a Python thread. Its signals are emitted from
that thread and, because the job lives on the GUI thread, reach the dialog's slots queued on the
GUI thread: a dialog connects `progressed` to its progress bar and never blocks. `cancel()` is
safe from any thread; the operation stops at its next chunk, and `cancelled` is emitted instead of
`failed`. Exactly one of `succeeded`, `failed`, `cancelled` is emitted, then `finished`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from facebatch_gui.core.packs import (
    DownloadProgress,
    PackCancelledError,
    PackManager,
)


class PackJob(QObject):
    progressed = Signal(object)  # DownloadProgress
    succeeded = Signal(object)  # the pack's Path (download, import) or a VerifyReport (verify)
    failed = Signal(str)  # a message for the operator (offline: how to import instead)
    cancelled = Signal(str)
    finished = Signal()

    def __init__(self, manager: PackManager | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.manager = manager or PackManager()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def download(self, name: str, **options: Any) -> None:
        """Start `PackManager.download(name, **options)` (e.g. url=, replace=True)."""
        self._start(
            lambda: self.manager.download(
                name, progress=self._progress, cancelled=self._stop.is_set, **options
            )
        )

    def import_pack(self, source: str | Path, name: str | None = None, **options: Any) -> None:
        self._start(
            lambda: self.manager.import_pack(
                source, name, progress=self._progress, cancelled=self._stop.is_set, **options
            )
        )

    def verify(self, name: str) -> None:
        self._start(lambda: self.manager.verify(name))

    def cancel(self) -> None:
        self._stop.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Join the worker thread (e.g. when a dialog closes); True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return not self.running

    def _progress(self, progress: DownloadProgress) -> None:
        self.progressed.emit(progress)

    def _start(self, call: Callable[[], object]) -> None:
        if self.running:
            raise RuntimeError("This job is still running; use a new PackJob or wait")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            result = call()
        except PackCancelledError as exc:
            self.cancelled.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure reaches the dialog as text
            self.failed.emit(str(exc) or type(exc).__name__)
        else:
            self.succeeded.emit(result)
        finally:
            self.finished.emit()
