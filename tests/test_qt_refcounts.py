"""Guards against a PySide6 release whose signals corrupt Python reference counts.

PySide6 6.12.0 drops a reference to `True` on every `Signal.emit()`; the task manager emits a few
per task and per progress tick, so a long session (or the test suite) ends with "Fatal Python
error: bool_dealloc". pyproject.toml excludes that release; this test fails on any release that
brings the fault back, instead of a crash at some later exit.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    ping = Signal()
    value = Signal(object)


def test_signal_emit_keeps_reference_counts(qtbot) -> None:
    emitter = _Emitter()
    got: list[object] = []
    emitter.ping.connect(lambda: got.append(1))
    emitter.value.connect(got.append)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for _ in range(200):
        emitter.ping.emit()
        emitter.value.emit(1)
    after = sys.getrefcount(True), sys.getrefcount(False)
    assert len(got) == 400
    assert after == before, f"True/False lost {before[0] - after[0]}/{before[1] - after[1]} refs"
