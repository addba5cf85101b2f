"""The user-list table: a thin QAbstractTableModel over plain `UserRow` objects.

Rows change in two ways. Edits (typing, paste, add, remove, load) go through the undo stack, one
command per operator action. Batch results arrive from the runner every ~100 ms and only mark rows
dirty; a timer turns the dirty set into one `dataChanged` per tick, as Anki's DataModel and
Spyder's search results do, so a 2,000-row batch never floods the view.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QUndoCommand, QUndoStack

from facebatch_gui.core.errors import ErrorCode
from facebatch_gui.core.records import ItemResult, Operation, UserEntry
from facebatch_gui.core.userlist import check_entry

AnyIndex = QModelIndex | QPersistentModelIndex
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
MERGE_GAP = 4  # untouched rows worth repainting to save a signal
RESORT_EVERY_S = 1.0  # rows that jump around faster than this cannot be read
_KEYS = itertools.count(1)


class RowState(StrEnum):
    PENDING = "pending"
    INVALID = "invalid"
    QUEUED = "queued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return self.value.capitalize()

    @property
    def retryable(self) -> bool:
        return self in (RowState.FAILED, RowState.CANCELLED)


@dataclass(slots=True)
class UserRow:
    user_id: str
    avatar_image_url: str = ""
    state: RowState = RowState.PENDING
    result: ItemResult | None = None
    problem: str | None = None  # why the row is invalid, found before anything runs
    thumbnail: QImage | None = None
    line: int | None = None
    key: int = field(default_factory=lambda: next(_KEYS))  # identity that survives sorting

    def entry(self) -> UserEntry:
        return UserEntry(self.user_id, self.avatar_image_url, self.line)

    def edited(self, user_id: str, url: str) -> UserRow:
        """A fresh pending row: an edited user is a new piece of work, not the old result."""
        return UserRow(user_id=user_id, avatar_image_url=url, line=self.line, key=self.key)


class Column:
    FACE, USER_ID, URL, STATUS, ERROR, DUPLICATE, SCORE = range(7)
    TITLES = ("Face", "User ID", "Avatar URL", "Status", "Error", "Duplicate of", "Det. score")
    EDITABLE = (USER_ID, URL)


RESULT_COLUMNS = frozenset(
    {Column.FACE, Column.STATUS, Column.ERROR, Column.DUPLICATE, Column.SCORE}
)


STATE_COLOURS = {
    RowState.SUCCEEDED: QColor("#2e7d32"),
    RowState.FAILED: QColor("#c62828"),
    RowState.INVALID: QColor("#c62828"),
    RowState.CANCELLED: QColor("#8d6e63"),
    RowState.QUEUED: QColor("#1565c0"),
}


def state_of(result: ItemResult) -> RowState:
    if result.status:
        return RowState.SUCCEEDED
    if result.error_code == ErrorCode.CANCELLED:
        return RowState.CANCELLED
    return RowState.FAILED


class UserListModel(QAbstractTableModel):
    """Owns the rows; every structural change goes through the `undo_stack`."""

    countsChanged = Signal()  # pending/succeeded/failed totals may have moved

    def __init__(
        self,
        undo_stack: QUndoStack | None = None,
        *,
        flush_ms: int = 100,
        state_icons: dict[RowState, QIcon] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.undo_stack = undo_stack or QUndoStack(self)
        self.rows: list[UserRow] = []
        self._by_id: dict[str, int] = {}
        self._dirty: set[int] = set()
        self._checked: dict[tuple[str, str, Operation], str | None] = {}
        self._id_counts: Counter[str] = Counter()
        self._icons = state_icons or {}
        self._flush = QTimer(self)
        self._flush.setSingleShot(True)
        self._flush.setInterval(flush_ms)
        self._flush.timeout.connect(self.flush)
        self.operation = Operation.REGISTER  # what validation checks rows for
        self._sort: tuple[int, Qt.SortOrder] = (-1, Qt.SortOrder.AscendingOrder)
        self._sorted_at = 0.0
        self._hold = False
        self._resort_pending = False
        self._resort = QTimer(self)
        self._resort.setSingleShot(True)
        self._resort.timeout.connect(self._apply_sort)
        self.flushes = 0  # how many coalesced dataChanged emissions (tests, diagnostics)

    # -- Qt model interface ----------------------------------------------------------------------
    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's own default
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column.TITLES)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return Column.TITLES[section]
        if orientation == Qt.Orientation.Vertical and role == Qt.ItemDataRole.DisplayRole:
            return section + 1
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        base = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() in Column.EDITABLE:
            base |= Qt.ItemFlag.ItemIsEditable
        return base

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        row = self.rows[index.row()]
        col = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return self._text(row, col, edit=role == Qt.ItemDataRole.EditRole)
        if role == SORT_ROLE:
            return self._sort_key(row, col)
        if role == Qt.ItemDataRole.DecorationRole:
            if col == Column.FACE:
                return row.thumbnail
            if col == Column.STATUS:
                return self._icons.get(row.state)
        if role == Qt.ItemDataRole.ForegroundRole and col in (Column.STATUS, Column.ERROR):
            colour = STATE_COLOURS.get(row.state)
            return QBrush(colour) if colour is not None else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col)
        return None

    def cell_text(self, row: UserRow, col: int) -> str:
        """What a cell shows; the table's delegate reads it without a round trip through Qt."""
        text = self._text(row, col, edit=False)
        return "" if text is None else str(text)

    def state_icon(self, state: RowState) -> QIcon | None:
        return self._icons.get(state)

    def setData(self, index: AnyIndex, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or index.column() not in Column.EDITABLE:
            return False
        row = self.rows[index.row()]
        text = str(value)
        user_id, url = row.user_id, row.avatar_image_url
        if index.column() == Column.USER_ID:
            user_id = text
        else:
            url = text.strip()
        if (user_id, url) == (row.user_id, row.avatar_image_url):
            return False
        self.undo_stack.push(EditRowCommand(self, index.row(), row.edited(user_id, url)))
        return True

    # -- reading ---------------------------------------------------------------------------------
    @staticmethod
    def _text(row: UserRow, col: int, *, edit: bool) -> Any:
        r = row.result
        if col == Column.USER_ID:
            return row.user_id
        if col == Column.URL:
            return row.avatar_image_url
        if edit:
            return None
        if col == Column.STATUS:
            return row.state.label
        if col == Column.ERROR:
            if row.state == RowState.INVALID:
                return f"invalid_input: {row.problem}"
            if r is not None and not r.status and r.error_code is not None:
                return f"{r.error_code.value}: {r.error_message or ''}"
            if r is not None and r.warnings:
                return "; ".join(r.warnings)
            return ""
        if col == Column.DUPLICATE:
            if r is not None and r.duplicate_of:
                return f"{r.duplicate_of} ({r.similarity:.2f})" if r.similarity else r.duplicate_of
            return ""
        if col == Column.SCORE:
            score = r.det_score if r is not None else None
            return f"{score:.2f}" if score is not None else ""
        return None

    @staticmethod
    def _sort_key(row: UserRow, col: int) -> Any:
        r = row.result
        if col == Column.FACE:
            return 1 if row.thumbnail is not None else 0
        if col == Column.USER_ID:
            return row.user_id.casefold()
        if col == Column.URL:
            return row.avatar_image_url.casefold()
        if col == Column.STATUS:
            return list(RowState).index(row.state)
        if col == Column.ERROR:
            if row.state == RowState.INVALID:
                return "invalid_input"
            return r.error_code.value if r is not None and r.error_code else ""
        if col == Column.DUPLICATE:
            return r.similarity if r is not None and r.similarity is not None else -1.0
        if col == Column.SCORE:
            return r.det_score if r is not None and r.det_score is not None else -1.0
        return None

    @staticmethod
    def _tooltip(row: UserRow, col: int) -> str | None:
        if col == Column.ERROR and row.state == RowState.INVALID:
            return row.problem
        if col == Column.ERROR and row.result is not None and row.result.error_message:
            return row.result.error_message
        if col == Column.URL and row.avatar_image_url:
            return row.avatar_image_url
        return None

    def position_of(self, key: int) -> int:
        for i, row in enumerate(self.rows):
            if row.key == key:
                return i
        raise KeyError(key)

    def row_for(self, user_id: str) -> int | None:
        return self._by_id.get(user_id)

    def counts(self) -> Counter[RowState]:
        return Counter(row.state for row in self.rows)

    def results(self) -> list[ItemResult]:
        return [row.result for row in self.rows if row.result is not None]

    # -- sorting -----------------------------------------------------------------------------
    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sorting lives here, not in the proxy: Python's sort over precomputed keys takes
        milliseconds where QSortFilterProxyModel's comparisons (two Python data() calls each)
        took a third of a second per batch tick on 2,000 rows."""
        self._sort = (column, order)
        self._apply_sort()

    def _apply_sort(self) -> None:
        column, order = self._sort
        self._sorted_at = time.monotonic()
        if column < 0 or len(self.rows) < 2:
            return
        keys = [self._sort_key(row, column) for row in self.rows]
        order_ = sorted(
            range(len(self.rows)),
            key=keys.__getitem__,
            reverse=order == Qt.SortOrder.DescendingOrder,
        )
        if order_ == list(range(len(self.rows))):
            return
        self.layoutAboutToBeChanged.emit()
        new_position = {old: new for new, old in enumerate(order_)}
        persistent = self.persistentIndexList()
        moved = [self.index(new_position[i.row()], i.column()) for i in persistent]
        self.rows = [self.rows[i] for i in order_]
        self._dirty = {new_position[i] for i in self._dirty if i in new_position}
        self._reindex()
        self.changePersistentIndexList(persistent, moved)
        self.layoutChanged.emit()

    def hold_resort(self, hold: bool) -> None:
        """While batches run, results do not move rows: re-sorting then competes with the
        pipeline threads for the GIL (the filter proxy calls Python for every row) and rows
        would jump under the operator's eyes. The list re-sorts once the batches are done."""
        self._hold = hold
        if not hold and self._resort_pending:
            self._resort_pending = False
            self._apply_sort()

    def _resort_soon(self) -> None:
        """Results moved rows of the sort column: re-sort, but not more than once a second."""
        if self._sort[0] not in RESULT_COLUMNS or self._resort.isActive():
            return
        if self._hold:
            self._resort_pending = True
            return
        wait = RESORT_EVERY_S - (time.monotonic() - self._sorted_at)
        if wait <= 0:
            self._apply_sort()
        else:
            self._resort.start(int(wait * 1000))

    def _reindex(self) -> None:
        self._by_id = {}
        for i, row in enumerate(self.rows):
            if row.state != RowState.INVALID:
                self._by_id.setdefault(row.user_id, i)

    # -- structural changes (called by undo commands only) ---------------------------------------
    def _replace_all(self, rows: list[UserRow]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self._dirty.clear()
        self._revalidate(emit=False)
        column, order = self._sort
        if column >= 0:
            self.rows.sort(
                key=lambda r: self._sort_key(r, column),
                reverse=order == Qt.SortOrder.DescendingOrder,
            )
            self._reindex()
        self.endResetModel()
        self.countsChanged.emit()

    def _insert(self, position: int, rows: Sequence[UserRow]) -> None:
        if not rows:
            return
        self.beginInsertRows(QModelIndex(), position, position + len(rows) - 1)
        self.rows[position:position] = list(rows)
        self._revalidate(emit=False)
        self.endInsertRows()
        self._emit_all_problem_cells()
        self.countsChanged.emit()

    def _remove(self, positions: Sequence[int]) -> list[tuple[int, UserRow]]:
        """Remove rows (in ranges, from the bottom up); returns what was removed, for undo."""
        removed: list[tuple[int, UserRow]] = []
        for start, end in reversed(_ranges(sorted(set(positions)))):
            self.beginRemoveRows(QModelIndex(), start, end)
            removed[0:0] = [(i, self.rows[i]) for i in range(start, end + 1)]
            del self.rows[start : end + 1]
            self.endRemoveRows()
        self._revalidate(emit=False)
        self._emit_all_problem_cells()
        self.countsChanged.emit()
        return removed

    def _restore(self, removed: Sequence[tuple[int, UserRow]]) -> None:
        for position, row in removed:  # ascending, so each lands where it was
            self.beginInsertRows(QModelIndex(), position, position)
            self.rows.insert(position, row)
            self.endInsertRows()
        self._revalidate(emit=False)
        self._emit_all_problem_cells()
        self.countsChanged.emit()

    def _set_row(self, position: int, row: UserRow) -> None:
        self.rows[position] = row
        self._revalidate(emit=False)
        self._emit_all_problem_cells()
        self.dataChanged.emit(self.index(position, 0), self.index(position, Column.SCORE))
        self.countsChanged.emit()

    def _emit_all_problem_cells(self) -> None:
        """A changed id can make another row (its former twin) valid again: refresh state cells."""
        if self.rows:
            self.dataChanged.emit(
                self.index(0, Column.STATUS), self.index(len(self.rows) - 1, Column.ERROR)
            )

    def _revalidate(self, *, emit: bool = True) -> None:
        """Mark rows that cannot run: bad id or URL (checked per row), or an id used twice."""
        self._by_id = {}
        seen = self._id_counts = Counter(row.user_id for row in self.rows)
        for i, row in enumerate(self.rows):
            problem = self._row_problem(row)
            if problem is None and seen[row.user_id] > 1:
                problem = f"user_id {row.user_id!r} appears {seen[row.user_id]} times in the list"
            if problem is not None:
                row.problem, row.state = problem, RowState.INVALID
            else:
                row.problem = None
                if row.state == RowState.INVALID:
                    row.state = RowState.PENDING
                self._by_id.setdefault(row.user_id, i)
        if emit:
            self._emit_all_problem_cells()

    def _row_problem(self, row: UserRow, operation: Operation | None = None) -> str | None:
        """Per-row checks, memoised: re-checking 10,000 unchanged URLs on every edit would stall."""
        operation = operation or self.operation
        key = (row.user_id, row.avatar_image_url, operation)
        if key not in self._checked:
            if len(self._checked) > 100_000:
                self._checked.clear()
            error = check_entry(UserEntry(row.user_id, row.avatar_image_url), operation)
            self._checked[key] = error.message if error is not None else None
        return self._checked[key]

    def can_run(self, row: UserRow, operation: Operation) -> bool:
        """Whether a batch of `operation` may take this row: its own checks for that operation
        (deleting needs no URL) and an id used once in the list."""
        return self._row_problem(row, operation) is None and self._id_counts[row.user_id] == 1

    def set_operation(self, operation: Operation) -> None:
        """Deletion needs no URL: the same row may be invalid to register and fine to delete."""
        if operation != self.operation:
            self.operation = operation
            self._revalidate()
            self.countsChanged.emit()

    # -- batch progress (not undoable: it is what happened, not an edit) -------------------------
    def mark_queued(self, user_ids: Iterable[str]) -> None:
        for uid in user_ids:
            i = self._by_id.get(uid)
            if i is not None:
                row = self.rows[i]
                row.state, row.result, row.thumbnail = RowState.QUEUED, None, None
                self._dirty.add(i)
        self._schedule()

    def apply_results(self, results: Iterable[ItemResult]) -> list[str]:
        """Record outcomes by user id; returns the ids whose faces were enrolled (thumbnails)."""
        enrolled: list[str] = []
        for result in results:
            i = self._by_id.get(result.user_id)
            if i is None:
                continue  # the operator loaded another list meanwhile; the store has it
            row = self.rows[i]
            row.result, row.state = result, state_of(result)
            if result.status and result.operation == Operation.REGISTER:
                enrolled.append(result.user_id)
            elif result.operation == Operation.DELETE:
                row.thumbnail = None
            self._dirty.add(i)
        self._schedule()
        return enrolled

    def set_thumbnails(self, images: dict[str, QImage]) -> None:
        for uid, image in images.items():
            i = self._by_id.get(uid)
            if i is not None:
                self.rows[i].thumbnail = image
                self._dirty.add(i)
        self._schedule()

    def _schedule(self) -> None:
        if self._dirty and not self._flush.isActive():
            self._flush.start()

    def flush(self) -> None:
        """One dataChanged per run of dirty rows. Not one span over everything: a sorting proxy
        re-places every row of a span, so the cost follows the rows that changed, not the list."""
        if not self._dirty:
            return
        dirty = sorted(i for i in self._dirty if i < len(self.rows))
        self._dirty.clear()
        for first, last in _ranges(dirty, gap=MERGE_GAP):
            self.dataChanged.emit(self.index(first, 0), self.index(last, Column.SCORE))
        self.flushes += 1
        self._resort_soon()
        self.countsChanged.emit()


def _ranges(sorted_positions: Sequence[int], *, gap: int = 0) -> list[tuple[int, int]]:
    """Contiguous runs; runs separated by at most `gap` untouched rows are joined."""
    out: list[tuple[int, int]] = []
    for p in sorted_positions:
        if out and p <= out[-1][1] + 1 + gap:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out


# -- undo commands ---------------------------------------------------------------------------------
class EditRowCommand(QUndoCommand):
    def __init__(self, model: UserListModel, position: int, new: UserRow) -> None:
        super().__init__(f"Edit {model.rows[position].user_id or 'row'}")
        self.model, self.new = model, new
        self.old = replace(model.rows[position])

    def redo(self) -> None:
        self.model._set_row(self.model.position_of(self.old.key), replace(self.new))

    def undo(self) -> None:
        self.model._set_row(self.model.position_of(self.old.key), replace(self.old))


class InsertRowsCommand(QUndoCommand):
    def __init__(
        self, model: UserListModel, position: int, rows: Sequence[UserRow], text: str
    ) -> None:
        super().__init__(text)
        self.model, self.position, self.rows = model, position, list(rows)

    def redo(self) -> None:
        self.model._insert(
            min(self.position, len(self.model.rows)), [replace(r) for r in self.rows]
        )

    def undo(self) -> None:
        self.model._remove([self.model.position_of(r.key) for r in self.rows])


class RemoveRowsCommand(QUndoCommand):
    def __init__(self, model: UserListModel, positions: Sequence[int]) -> None:
        n = len(set(positions))
        super().__init__(f"Remove {n} row{'s' if n != 1 else ''}")
        self.model = model
        self.keys = [model.rows[p].key for p in sorted(set(positions))]
        self.removed: list[tuple[int, UserRow]] = []

    def redo(self) -> None:
        self.removed = self.model._remove([self.model.position_of(k) for k in self.keys])

    def undo(self) -> None:
        self.model._restore(self.removed)


class ReplaceRowsCommand(QUndoCommand):
    """Loading a file or a task's results: undo brings the previous list back."""

    def __init__(self, model: UserListModel, rows: Sequence[UserRow], text: str) -> None:
        super().__init__(text)
        self.model, self.new = model, list(rows)
        self.old = list(model.rows)

    def redo(self) -> None:
        self.model._replace_all(self.new)

    def undo(self) -> None:
        self.model._replace_all(self.old)


def rows_from_entries(entries: Iterable[UserEntry]) -> list[UserRow]:
    return [UserRow(e.user_id, e.avatar_image_url, line=e.line) for e in entries]


def rows_from_results(results: Iterable[ItemResult]) -> list[UserRow]:
    return [
        UserRow(r.user_id, r.avatar_image_url or "", state=state_of(r), result=r) for r in results
    ]


class UserFilterProxy(QSortFilterProxyModel):
    """Quick filter by state plus a case-insensitive text filter over id, URL and error."""

    FILTERS: ClassVar[dict[str, frozenset[RowState] | None]] = {
        "All": None,
        "Pending": frozenset({RowState.PENDING, RowState.QUEUED, RowState.INVALID}),
        "Succeeded": frozenset({RowState.SUCCEEDED}),
        "Failed": frozenset({RowState.FAILED, RowState.CANCELLED, RowState.INVALID}),
    }

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._states: frozenset[RowState] | None = None
        self._text = ""
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)  # re-filters changed rows; sorting is the source's

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Delegate to the source model (see UserListModel.sort); the proxy only filters."""
        model = self.sourceModel()
        if isinstance(model, UserListModel):
            model.sort(column, order)
        else:
            super().sort(column, order)

    def set_state_filter(self, name: str) -> None:
        self.beginFilterChange()
        self._states = self.FILTERS[name]
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_text_filter(self, text: str) -> None:
        self.beginFilterChange()
        self._text = text.strip().casefold()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: AnyIndex) -> bool:
        model = self.sourceModel()
        if not isinstance(model, UserListModel) or source_row >= len(model.rows):
            return True
        row = model.rows[source_row]
        if self._states is not None and row.state not in self._states:
            return False
        if not self._text:
            return True
        r = row.result
        haystack = [row.user_id, row.avatar_image_url, row.problem or ""]
        if r is not None:
            haystack += [r.error_code.value if r.error_code else "", r.error_message or ""]
        return any(self._text in part.casefold() for part in haystack)
