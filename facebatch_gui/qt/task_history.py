"""Task history: every task in the store, with live counts for the ones running here.

The store is the truth (tasks started over HTTP, by the CLI or by another instance show up too), so
the model re-reads the task list on a slow timer and whenever a task starts or ends; progress
signals of tasks running in this process update their counts in between without a query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from facebatch_gui.core.records import TaskRecord, TaskStatus
from facebatch_gui.qt.runner import TaskProgress

AnyIndex = QModelIndex | QPersistentModelIndex
TASK_ID_ROLE = Qt.ItemDataRole.UserRole + 10

_COLOURS = {
    TaskStatus.COMPLETED: QColor("#2e7d32"),
    TaskStatus.FAILED: QColor("#c62828"),
    TaskStatus.INTERRUPTED: QColor("#ef6c00"),
    TaskStatus.CANCELLED: QColor("#8d6e63"),
    TaskStatus.PROCESSING: QColor("#1565c0"),
}


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


class TaskHistoryModel(QAbstractTableModel):
    TITLES = (
        "Started",
        "Operation",
        "Status",
        "Succeeded",
        "Failed",
        "Total",
        "Updated",
        "Task ID",
    )

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tasks: list[TaskRecord] = []

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's own default
        return 0 if parent.isValid() else len(self.tasks)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.TITLES)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.TITLES[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.tasks):
            return None
        t = self.tasks[index.row()]
        if role == TASK_ID_ROLE:
            return t.task_id
        if role == Qt.ItemDataRole.DisplayRole:
            col = index.column()
            return (
                _local_time(t.created_at),
                t.operation.value.capitalize(),
                f"{t.status.value} ({t.progress}%)"
                if t.status == TaskStatus.PROCESSING
                else t.status.value,
                str(t.completed_items - t.failed_items),
                str(t.failed_items),
                str(t.total_items),
                _local_time(t.updated_at),
                t.task_id,
            )[col]
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == 2:
            colour = _COLOURS.get(t.status)
            return QBrush(colour) if colour is not None else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return t.error_message or t.task_id
        return None

    def set_tasks(self, tasks: list[TaskRecord]) -> None:
        """Replace the list, keeping rows stable when only counts changed (no reset flicker)."""
        if [t.task_id for t in tasks] == [t.task_id for t in self.tasks]:
            self.tasks = tasks
            if tasks:
                self.dataChanged.emit(self.index(0, 0), self.index(len(tasks) - 1, 7))
            return
        self.beginResetModel()
        self.tasks = tasks
        self.endResetModel()

    def apply_progress(self, progress: TaskProgress) -> None:
        for i, t in enumerate(self.tasks):
            if t.task_id == progress.task_id:
                t.completed_items = progress.completed
                t.failed_items = progress.failed
                t.progress = TaskRecord.progress_of(progress.completed, progress.total)
                t.status = TaskStatus.PROCESSING
                self.dataChanged.emit(self.index(i, 0), self.index(i, 7))
                return

    def task(self, row: int) -> TaskRecord | None:
        return self.tasks[row] if 0 <= row < len(self.tasks) else None

    def row_of(self, task_id: str) -> int | None:
        return next((i for i, t in enumerate(self.tasks) if t.task_id == task_id), None)
