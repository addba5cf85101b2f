"""The log dock: Python logging records (errors and warnings by default) shown in the window.

Records may come from any thread; the handler hands them to the GUI thread by a queued signal.
"""

from __future__ import annotations

import contextlib
import html
import logging

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

_COLOURS = {logging.ERROR: "#c62828", logging.WARNING: "#ef6c00", logging.CRITICAL: "#b71c1c"}


class _Bridge(QObject):
    record = Signal(int, str)


class QtLogHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.bridge = _Bridge()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(RuntimeError):  # the window is gone at interpreter exit
            self.bridge.record.emit(record.levelno, self.format(record))


class LogDock(QDockWidget):
    LEVELS = (("Errors", logging.ERROR), ("Warnings", logging.WARNING), ("Info", logging.INFO))

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Log", parent)
        self.setObjectName("logDock")
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setMaximumBlockCount(5000)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.level = QComboBox()
        for name, level in self.LEVELS:
            self.level.addItem(name, level)
        self.level.setCurrentIndex(2)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.text.clear)
        bar = QHBoxLayout()
        bar.addWidget(self.level)
        bar.addStretch(1)
        bar.addWidget(clear)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.text)
        self.setWidget(body)
        self.handler = QtLogHandler()
        self.handler.bridge.record.connect(self._append, Qt.ConnectionType.QueuedConnection)
        self.lines: list[tuple[int, str]] = []  # what was shown, for tests and copy-out

    def _append(self, level: int, text: str) -> None:
        if level < int(self.level.currentData()):
            return
        self.lines.append((level, text))
        del self.lines[:-5000]
        colour = _COLOURS.get(level)
        safe = html.escape(text)
        self.text.appendHtml(f'<span style="color:{colour}">{safe}</span>' if colour else safe)
