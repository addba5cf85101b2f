"""The GUI's table models tested without widgets (as napari tests its models): Qt's own model
checker, undo/redo of every edit, validation marks, coalesced result updates and the filters."""

from __future__ import annotations

import itertools
import time

import pytest
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt

from facebatch_gui.core.errors import ErrorCode
from facebatch_gui.core.records import (
    ItemResult,
    Operation,
    TaskRecord,
    TaskStatus,
    UserEntry,
    utc_now,
)
from facebatch_gui.core.userlist import entries_from_pasted_text
from facebatch_gui.qt.runner import TaskProgress
from facebatch_gui.qt.task_history import TaskHistoryModel
from facebatch_gui.qt.userlist_model import (
    RESORT_EVERY_S,
    Column,
    InsertRowsCommand,
    RemoveRowsCommand,
    ReplaceRowsCommand,
    RowState,
    UserFilterProxy,
    UserListModel,
    UserRow,
    rows_from_entries,
)

URL = "http://127.0.0.1:9/{}.jpg"


def _model(n: int = 3) -> UserListModel:
    model = UserListModel(flush_ms=10)
    rows = [UserRow(f"u{i}", URL.format(i)) for i in range(n)]
    model.undo_stack.push(ReplaceRowsCommand(model, rows, "load"))
    return model


def _ok(uid: str, score: float = 0.9) -> ItemResult:
    return ItemResult(user_id=uid, status=True, det_score=score)


def _fail(uid: str, code: ErrorCode = ErrorCode.DOWNLOAD_FAILED) -> ItemResult:
    return ItemResult(user_id=uid, status=False, error_code=code, error_message=f"{uid} broke")


def test_user_list_model_passes_qt_model_tester(qtmodeltester) -> None:
    model = _model(5)
    model.apply_results([_ok("u1"), _fail("u2")])
    model.flush()
    qtmodeltester.check(model, force_py=True)
    proxy = UserFilterProxy()
    proxy.setSourceModel(model)
    qtmodeltester.check(proxy, force_py=True)


def test_task_history_model_passes_qt_model_tester(qtmodeltester) -> None:
    model = TaskHistoryModel()
    now = utc_now()
    model.set_tasks(
        [
            TaskRecord(task_id="a", status=TaskStatus.COMPLETED, created_at=now, updated_at=now),
            TaskRecord(task_id="b", status=TaskStatus.INTERRUPTED, created_at=now, updated_at=now),
        ]
    )
    qtmodeltester.check(model, force_py=True)


def test_cells_show_status_error_duplicate_and_score() -> None:
    model = _model(3)
    dup = ItemResult(
        user_id="u2",
        status=False,
        error_code=ErrorCode.DUPLICATE_FACE,
        error_message="matches u0",
        duplicate_of="u0",
        similarity=0.71,
        det_score=0.8,
    )
    model.apply_results([_ok("u0", 0.87), _fail("u1"), dup])
    model.flush()

    def text(row: int, col: int) -> str:
        return model.data(model.index(row, col))

    assert [text(i, Column.STATUS) for i in range(3)] == ["Succeeded", "Failed", "Failed"]
    assert text(0, Column.SCORE) == "0.87"
    assert text(1, Column.ERROR) == "download_failed: u1 broke"
    assert text(2, Column.DUPLICATE) == "u0 (0.71)"
    assert model.data(model.index(1, Column.ERROR), Qt.ItemDataRole.ToolTipRole) == "u1 broke"


def test_invalid_rows_are_marked_before_anything_runs() -> None:
    model = UserListModel()
    rows = rows_from_entries(
        [
            UserEntry("alice", URL.format("a"), 2),
            UserEntry("", URL.format("b"), 3),
            UserEntry("bob", "ftp://example.invalid/x.jpg", 4),
            UserEntry("alice", URL.format("c"), 5),
            UserEntry("carol", URL.format("d"), 6),
        ]
    )
    model.undo_stack.push(ReplaceRowsCommand(model, rows, "load"))
    states = [r.state for r in model.rows]
    assert states == [
        RowState.INVALID,
        RowState.INVALID,
        RowState.INVALID,
        RowState.INVALID,
        RowState.PENDING,
    ]
    assert "user_id is empty" in (model.rows[1].problem or "")
    assert "scheme" in (model.rows[2].problem or "")
    assert "appears 2 times" in (model.rows[0].problem or "")
    # Renaming one twin makes both valid again; undo brings the mark back.
    assert model.setData(model.index(3, Column.USER_ID), "alice2")
    assert model.rows[0].state == RowState.PENDING and model.rows[3].state == RowState.PENDING
    model.undo_stack.undo()
    assert model.rows[0].state == RowState.INVALID and model.rows[3].user_id == "alice"


def test_edit_insert_remove_and_load_are_undoable() -> None:
    model = _model(3)
    stack = model.undo_stack
    assert model.setData(model.index(1, Column.URL), "  http://127.0.0.1:9/new.jpg ")
    assert model.rows[1].avatar_image_url == "http://127.0.0.1:9/new.jpg"  # trimmed
    stack.push(InsertRowsCommand(model, 3, [UserRow("u9", URL.format(9))], "add"))
    stack.push(RemoveRowsCommand(model, [0, 2]))
    assert [r.user_id for r in model.rows] == ["u1", "u9"]
    stack.undo()  # remove
    assert [r.user_id for r in model.rows] == ["u0", "u1", "u2", "u9"]
    stack.undo()  # insert
    stack.undo()  # edit
    assert model.rows[1].avatar_image_url == URL.format(1)
    stack.redo()
    assert model.rows[1].avatar_image_url == "http://127.0.0.1:9/new.jpg"
    stack.undo()
    stack.undo()  # the load itself
    assert model.rows == []


def test_editing_a_finished_row_makes_it_pending_again() -> None:
    model = _model(2)
    model.apply_results([_fail("u0")])
    model.flush()
    assert model.rows[0].state == RowState.FAILED
    model.setData(model.index(0, Column.URL), URL.format("fixed"))
    assert model.rows[0].state == RowState.PENDING and model.rows[0].result is None


def test_results_are_coalesced_into_one_data_changed_per_tick(qtbot) -> None:
    model = _model(500)
    spans: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda a, b, *_: spans.append((a.row(), b.row())))
    for start in range(0, 500, 50):  # ten progress signals arriving within one tick
        model.apply_results([_ok(f"u{i}") for i in range(start, start + 50)])
    assert spans == []  # nothing emitted until the timer fires
    qtbot.waitUntil(lambda: len(spans) == 1, timeout=2000)
    assert spans == [(0, 499)]
    assert model.counts()[RowState.SUCCEEDED] == 500


def test_results_for_users_not_in_the_list_are_ignored() -> None:
    model = _model(2)
    assert model.apply_results([_ok("someone-else")]) == []
    model.flush()
    assert model.counts()[RowState.PENDING] == 2


def test_filter_proxy_by_state_and_text() -> None:
    model = _model(6)
    model.apply_results([_ok("u0"), _fail("u1"), _fail("u2", ErrorCode.NO_FACE_DETECTED)])
    model.flush()
    proxy = UserFilterProxy()
    proxy.setSourceModel(model)

    def ids() -> list[str]:
        return [proxy.index(r, Column.USER_ID).data() for r in range(proxy.rowCount())]

    proxy.set_state_filter("Failed")
    assert ids() == ["u1", "u2"]
    proxy.set_text_filter("NO_FACE")
    assert ids() == ["u2"]
    proxy.set_text_filter("")
    proxy.set_state_filter("Succeeded")
    assert ids() == ["u0"]
    proxy.set_state_filter("Pending")
    assert ids() == ["u3", "u4", "u5"]
    # A row that changes state leaves the filtered view without a reset.
    model.apply_results([_ok("u3")])
    model.flush()
    assert ids() == ["u4", "u5"]


def test_sorting_by_score_is_numeric() -> None:
    model = _model(3)
    model.apply_results([_ok("u0", 0.9), _ok("u1", 0.65), _ok("u2", 0.75)])
    model.flush()
    proxy = UserFilterProxy()
    proxy.setSourceModel(model)
    proxy.sort(Column.SCORE, Qt.SortOrder.AscendingOrder)
    assert [proxy.index(r, Column.USER_ID).data() for r in range(3)] == ["u1", "u2", "u0"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user_id\tavatar_image_url\na\thttp://h/a.jpg\nb\thttp://h/b.jpg\n", ["a", "b"]),
        ('a,http://h/a.jpg\n"b,x",http://h/b.jpg\n\n', ["a", "b,x"]),
        ("solo\n", ["solo"]),
        ("", []),
    ],
)
def test_entries_from_pasted_text(text: str, expected: list[str]) -> None:
    entries = entries_from_pasted_text(text)
    assert [e.user_id for e in entries] == expected
    if expected and expected != ["solo"]:
        assert entries[0].avatar_image_url == "http://h/a.jpg"


def test_history_applies_live_progress_without_reset() -> None:
    model = TaskHistoryModel()
    now = utc_now()
    model.set_tasks(
        [
            TaskRecord(
                task_id="t1",
                status=TaskStatus.QUEUED,
                created_at=now,
                updated_at=now,
                total_items=10,
            )
        ]
    )
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    model.apply_progress(TaskProgress("t1", [], completed=4, failed=1, total=10, elapsed_s=1.0))
    assert model.data(model.index(0, 2)) == "processing (40%)"
    assert model.data(model.index(0, 3)) == "3" and model.data(model.index(0, 4)) == "1"
    assert resets == []
    assert model.rowCount(QModelIndex()) == 1


def test_delete_validation_needs_no_url() -> None:
    model = UserListModel()
    model.undo_stack.push(
        ReplaceRowsCommand(model, [UserRow("a", ""), UserRow("b", URL.format("b"))], "load")
    )
    assert model.rows[0].state == RowState.INVALID  # registering needs a URL
    model.set_operation(Operation.DELETE)
    assert model.rows[0].state == RowState.PENDING


def test_sorting_keeps_undo_and_selection_on_the_same_users(qtbot) -> None:
    model = _model(4)
    persistent = QPersistentModelIndex(model.index(0, Column.USER_ID))  # u0, as a view holds it
    model.setData(model.index(3, Column.URL), URL.format("new"))  # edit u3
    model.sort(Column.USER_ID, Qt.SortOrder.DescendingOrder)
    assert [r.user_id for r in model.rows] == ["u3", "u2", "u1", "u0"]
    assert persistent.row() == 3 and persistent.data() == "u0"
    model.undo_stack.undo()  # the edit of u3, now at the top
    assert model.rows[0].user_id == "u3" and model.rows[0].avatar_image_url == URL.format(3)
    model.undo_stack.push(RemoveRowsCommand(model, [1]))  # u2
    model.sort(Column.USER_ID, Qt.SortOrder.AscendingOrder)
    model.undo_stack.undo()
    assert sorted(r.user_id for r in model.rows) == ["u0", "u1", "u2", "u3"]
    assert model.row_for("u2") is not None


def test_results_resort_a_sorted_list_at_most_once_a_second(qtbot) -> None:
    model = _model(6)
    model.sort(Column.STATUS, Qt.SortOrder.DescendingOrder)
    layouts: list[float] = []
    model.layoutChanged.connect(lambda *_: layouts.append(time.monotonic()))
    model.apply_results([_ok("u4")])
    model.flush()
    model.apply_results([_fail("u1")])
    model.flush()
    qtbot.waitUntil(lambda: len(layouts) >= 1, timeout=3000)
    qtbot.waitUntil(lambda: model.rows[0].state == RowState.FAILED, timeout=3000)
    assert [r.user_id for r in model.rows[:2]] == ["u1", "u4"]  # failed, then succeeded
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(layouts))


def test_a_held_list_keeps_its_order_until_the_batches_end(qtbot) -> None:
    model = _model(4)
    model.sort(Column.STATUS, Qt.SortOrder.DescendingOrder)
    model.hold_resort(True)
    model.apply_results([_fail("u3")])
    model.flush()
    qtbot.wait(RESORT_EVERY_S * 1000 + 200)
    assert [r.user_id for r in model.rows] == ["u0", "u1", "u2", "u3"]  # nothing moved
    model.hold_resort(False)
    assert model.rows[0].user_id == "u3"  # the failure sorts first now
