"""The real main window driven with qtbot: real models, photos served on 127.0.0.1, a real SQLite
store, the real task manager and runner. Nothing here is mocked."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox

from facebatch_gui.core.appsettings import AppSettings
from facebatch_gui.core.errors import ErrorCode
from facebatch_gui.core.records import Operation, TaskStatus, UserEntry
from facebatch_gui.core.report import FAILURE_COLUMNS
from facebatch_gui.core.store.config import StoreConfig
from facebatch_gui.core.store.sqlite import SqliteStore
from facebatch_gui.qt.main_window import SETTINGS_KEY, MainWindow
from facebatch_gui.qt.settings_dialog import SettingsDialog
from facebatch_gui.qt.userlist_model import RowState
from tests.support.guistall import measure_stall
from tests.support.imageserver import ImageServerProcess
from tests.support.qtdialogs import answer_next_message_box

OBAMA = "faces/identities/obama/1.jpg"
BIDEN = "faces/identities/biden/1.jpg"
KIT = "faces/identities/kit_harington/1.jpg"
GROUP = "faces/multi/kit_with_rose.jpg"


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "avatar_image_url"])
        writer.writerows(rows)
    return path


def _settings(tmp_path: Path, name: str = "settings.ini") -> QSettings:
    return QSettings(str(tmp_path / name), QSettings.Format.IniFormat)


def _wait_idle(qtbot, window: MainWindow, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: not window.tasks.running_tasks(), timeout=timeout)
    window.model.flush()


def _state(window: MainWindow, uid: str) -> RowState:
    row = window.model.row_for(uid)
    assert row is not None, uid
    return window.model.rows[row].state


def _code(window: MainWindow, uid: str) -> ErrorCode | None:
    row = window.model.row_for(uid)
    assert row is not None
    result = window.model.rows[row].result
    return result.error_code if result is not None else None


@pytest.fixture
def make_window(qtbot, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []

    def make(**kwargs: object) -> MainWindow:
        if "store" not in kwargs:
            kwargs["store"] = SqliteStore(tmp_path / "faces.db")
        qsettings = kwargs.pop("qsettings", None) or _settings(tmp_path)
        window = MainWindow(qsettings, **kwargs)  # type: ignore[arg-type]
        qtbot.addWidget(window)
        window.resize(1280, 800)
        window.show()
        made.append(window)
        return window

    yield make
    for window in made:
        window.shutdown()
        assert window.jobs.active() == 0, "window left background jobs running"


@pytest.fixture
def window(make_window, engine) -> MainWindow:
    return make_window(engine=engine)


def test_register_from_csv_reaches_final_states_with_thumbnails_and_exports(
    qtbot, window: MainWindow, image_server, tmp_path: Path
) -> None:
    users = _write_csv(
        tmp_path / "users.csv",
        [
            ("obama", image_server.url(OBAMA)),
            ("biden", image_server.url(BIDEN)),
            ("obama-again", image_server.url("faces/identities/obama/2.jpg")),
            ("group", image_server.url(GROUP)),
            ("dead", image_server.url("faces/no/such.jpg")),
            ("", image_server.url(KIT)),  # invalid: marked, never run
        ],
    )
    assert window.load_path(users)
    assert window.model.counts()[RowState.INVALID] == 1
    task_id = window.register()
    assert task_id is not None
    assert _state(window, "obama") == RowState.QUEUED
    _wait_idle(qtbot, window)

    assert _state(window, "biden") == RowState.SUCCEEDED
    # Two photos of one person: whichever settles first is enrolled, the other is a duplicate.
    pair = {_code(window, "obama"), _code(window, "obama-again")}
    assert pair == {None, ErrorCode.DUPLICATE_FACE}
    enrolled = "obama" if _code(window, "obama") is None else "obama-again"
    assert _code(window, "group") == ErrorCode.MULTIPLE_FACES
    assert _code(window, "dead") == ErrorCode.DOWNLOAD_FAILED
    assert window.model.rows[5].state == RowState.INVALID
    record = window.store.get_task(task_id, with_results=False)
    assert record is not None and record.total_items == 5 and record.failed_items == 3

    # Thumbnails of the enrolled faces arrive from the store in the background.
    def thumbs() -> bool:
        return all(
            window.model.rows[window.model.row_for(u)].thumbnail is not None  # type: ignore[index]
            for u in (enrolled, "biden")
        )

    qtbot.waitUntil(thumbs, timeout=10_000)
    assert window.model.rows[window.model.row_for("dead")].thumbnail is None  # type: ignore[index]

    # The history lists the task as completed.
    def history_says_completed() -> bool:
        tasks = window.history.tasks
        return bool(tasks) and tasks[0].status == TaskStatus.COMPLETED

    qtbot.waitUntil(history_says_completed, timeout=10_000)  # the history follows by itself
    assert window.history.tasks[0].task_id == task_id

    failures = tmp_path / "failures.csv"
    assert window.export_failures(failures) == 4
    with failures.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == FAILURE_COLUMNS
    codes = {r[0]: r[2] for r in rows[1:]}
    duplicate = "obama" if enrolled == "obama-again" else "obama-again"
    assert codes == {
        duplicate: "duplicate_face",
        "group": "multiple_faces",
        "dead": "download_failed",
        "": "invalid_input",
    }
    results = tmp_path / "results.csv"
    assert window.export_results(results) == 6
    with results.open(newline="", encoding="utf-8") as fh:
        all_rows = list(csv.DictReader(fh))
    assert {r["user_id"]: r["state"] for r in all_rows}[enrolled] == "succeeded"
    assert float({r["user_id"]: r["det_score"] for r in all_rows}["biden"]) > 0.5


def test_cancel_mid_batch_leaves_cancelled_rows(
    qtbot, window: MainWindow, image_server, tmp_path: Path
) -> None:
    window.settings.batch.fetch_workers = 2
    rows = [(f"slow-{i}", image_server.url(f"slow/400/{OBAMA}")) for i in range(30)]
    window.load_path(_write_csv(tmp_path / "slow.csv", rows))
    task_id = window.register()
    assert task_id is not None
    counts = window.model.counts
    qtbot.waitUntil(lambda: counts()[RowState.QUEUED] < 30, timeout=30_000)
    assert window.act_cancel.isEnabled()
    window.act_cancel.trigger()
    _wait_idle(qtbot, window, 30_000)
    final = window.model.counts()
    assert final[RowState.CANCELLED] > 0
    assert final[RowState.QUEUED] == 0
    record = window.store.get_task(task_id, with_results=False)
    assert record is not None and record.status == TaskStatus.CANCELLED


def test_retry_reruns_only_the_failed_rows(
    qtbot, window: MainWindow, image_server, tmp_path: Path
) -> None:
    window.load_path(
        _write_csv(
            tmp_path / "users.csv",
            [
                ("kit", image_server.url(KIT)),
                ("group", image_server.url(GROUP)),
                ("dead", image_server.url("status/404")),
            ],
        )
    )
    first = window.register()
    _wait_idle(qtbot, window)
    assert _state(window, "kit") == RowState.SUCCEEDED
    assert window.act_retry.isEnabled()
    retried = window.retry_failed()
    assert len(retried) == 1 and retried[0] != first
    assert _state(window, "kit") == RowState.SUCCEEDED  # untouched
    assert _state(window, "group") == RowState.QUEUED
    _wait_idle(qtbot, window)
    record = window.store.get_task(retried[0])
    assert record is not None and record.total_items == 2
    assert {r.user_id for r in record.results} == {"group", "dead"}
    assert _code(window, "group") == ErrorCode.MULTIPLE_FACES


def test_delete_asks_for_confirmation_naming_the_count(
    qtbot, window: MainWindow, image_server, tmp_path: Path
) -> None:
    window.load_path(
        _write_csv(
            tmp_path / "users.csv",
            [("biden", image_server.url(BIDEN)), ("kit", image_server.url(KIT))],
        )
    )
    window.register()
    _wait_idle(qtbot, window)
    assert window.store.get_face("biden") is not None

    seen: list[str] = []
    answer_next_message_box(QMessageBox.StandardButton.Cancel, seen)
    assert window.delete_faces() is None
    assert "2 users" in seen[0]
    assert window.store.get_face("biden") is not None

    answer_next_message_box(QMessageBox.StandardButton.Yes, seen)
    task_id = window.delete_faces()
    assert task_id is not None
    _wait_idle(qtbot, window)
    assert window.store.get_face("biden") is None and window.store.get_face("kit") is None
    row = window.model.rows[window.model.row_for("kit")]  # type: ignore[index]
    assert row.state == RowState.SUCCEEDED and row.result is not None
    assert row.result.operation == Operation.DELETE and row.thumbnail is None


def test_register_acts_on_selected_rows_only(
    qtbot, window: MainWindow, image_server, tmp_path: Path
) -> None:
    window.load_path(
        _write_csv(
            tmp_path / "users.csv",
            [("biden", image_server.url(BIDEN)), ("kit", image_server.url(KIT))],
        )
    )
    window.table.selectRow(window.proxy.mapFromSource(window.model.index(1, 1)).row())
    assert window.act_register.text() == "Register (1 selected)"
    task_id = window.register()
    _wait_idle(qtbot, window)
    record = window.store.get_task(task_id)  # type: ignore[arg-type]
    assert record is not None and [r.user_id for r in record.results] == ["kit"]
    assert _state(window, "biden") == RowState.PENDING


def test_settings_survive_a_restart_of_the_window(qtbot, make_window, tmp_path: Path) -> None:
    first = make_window(load_models=False)

    def edit_dialog() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, SettingsDialog):
            QTimer.singleShot(20, edit_dialog)
            return
        dialog.min_face_size.setValue(64)
        dialog.duplicate_threshold.setValue(0.5)
        dialog.multi_face.setCurrentIndex(dialog.multi_face.findData("largest"))
        dialog.replace.setChecked(True)
        dialog.fetch_workers.setValue(3)
        dialog.accept()

    QTimer.singleShot(20, edit_dialog)
    first.open_settings()
    assert first.settings.batch.quality.min_face_size == 64
    first.close()

    second = make_window(
        load_models=False, qsettings=_settings(tmp_path), store=SqliteStore(tmp_path / "b.db")
    )
    q = second.settings.batch.quality
    assert (q.min_face_size, q.duplicate_threshold, q.multi_face.value) == (64, 0.5, "largest")
    assert second.settings.batch.replace and second.settings.batch.fetch_workers == 3


def test_unreadable_saved_settings_fall_back_to_defaults(
    qtbot, make_window, tmp_path: Path
) -> None:
    qsettings = _settings(tmp_path, "broken.ini")
    qsettings.setValue(SETTINGS_KEY, '{"batch": {"fetch_workers": 999}}')
    window = make_window(load_models=False, qsettings=qsettings)
    assert window.settings == AppSettings()
    qtbot.waitUntil(
        lambda: any("were reset" in text for _level, text in window.log_dock.lines), timeout=2000
    )


def _drop(window: MainWindow, path: Path) -> bool:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    rest = (
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    try:
        enter = QDragEnterEvent(QPointF(20, 20), *rest)  # PySide6 6.12 (QPoint deprecated there)
    except TypeError:
        enter = QDragEnterEvent(QPoint(20, 20), *rest)  # PySide6 6.11 takes only a QPoint
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(
        QPointF(20, 20),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, drop)
    return drop.isAccepted()


def test_drag_and_drop_of_a_csv_and_a_folder(make_window, tmp_path: Path) -> None:
    window = make_window(load_models=False)
    users = _write_csv(tmp_path / "dropped.csv", [("a", "http://127.0.0.1:9/a.jpg")])
    assert _drop(window, users)
    assert [r.user_id for r in window.model.rows] == ["a"]
    assert "dropped.csv" in window.windowTitle()
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "zoe.jpg").write_bytes(b"\xff\xd8")
    assert _drop(window, photos)
    assert [r.user_id for r in window.model.rows] == ["zoe"]
    other = tmp_path / "notes.pdf"
    other.write_bytes(b"%PDF")
    assert not _drop(window, other)
    assert [r.user_id for r in window.model.rows] == ["zoe"]
    window.undo_stack.undo()  # loading is undoable: the CSV's rows come back
    assert [r.user_id for r in window.model.rows] == ["a"]


def test_paste_rows_from_the_clipboard_and_undo(make_window) -> None:
    window = make_window(load_models=False)
    QGuiApplication.clipboard().setText(
        "user_id\tavatar_image_url\nann\thttp://127.0.0.1:9/ann.jpg\nben\tnot-a-scheme:x\n"
    )
    window.paste_rows()
    assert [r.user_id for r in window.model.rows] == ["ann", "ben"]
    assert window.model.rows[1].state == RowState.INVALID
    assert "invalid" in window.counts_label.text()
    window.undo_stack.undo()
    assert window.model.rows == []


def test_missing_model_pack_is_explained_and_list_editing_still_works(
    qtbot, make_window, tmp_path: Path
) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    qsettings = _settings(tmp_path, "nomodels.ini")
    qsettings.setValue(SETTINGS_KEY, AppSettings(model_dir=str(empty)).model_dump_json())
    window = make_window(qsettings=qsettings)
    qtbot.waitUntil(lambda: window.banner_box.isVisible(), timeout=20_000)
    assert "No face model pack" in window.banner.text()
    assert window.models_label.text() == "Models: none"
    window.paste_text("x,http://127.0.0.1:9/x.jpg")
    assert not window.act_register.isEnabled()
    assert window.act_save.isEnabled()


def test_history_shows_a_task_and_resumes_an_interrupted_one(
    qtbot, window: MainWindow, image_server
) -> None:
    entries = [
        UserEntry("biden", image_server.url(BIDEN), 2),
        UserEntry("kit", image_server.url(KIT), 3),
    ]
    record = window.store.create_task(
        Operation.REGISTER, entries, window.settings.batch.model_dump(mode="json")
    )
    window.store.set_task_status(record.task_id, TaskStatus.INTERRUPTED)
    window.refresh_history()
    row = window.history.row_of(record.task_id)
    assert row is not None
    window.history_view.setCurrentIndex(window.history.index(row, 0))
    assert [r.user_id for r in window.model.rows] == ["biden", "kit"]  # shown, pending
    assert window.resume_button.isEnabled()
    window.resume_button.click()
    _wait_idle(qtbot, window)
    assert _state(window, "biden") == RowState.SUCCEEDED
    assert _state(window, "kit") == RowState.SUCCEEDED
    final = window.store.get_task(record.task_id, with_results=False)
    assert final is not None and final.status == TaskStatus.COMPLETED
    window.refresh_history()
    assert window.history.tasks[window.history.row_of(record.task_id)].status == (  # type: ignore[index]
        TaskStatus.COMPLETED
    )
    assert not window.resume_button.isEnabled()


def test_event_loop_never_stalls_during_a_2000_row_batch(
    qtbot, window: MainWindow, faces_dir: Path, tmp_path: Path
) -> None:
    """A heartbeat timer in the GUI thread records the longest gap between its ticks while a
    2,000-row register batch runs: real photos every 50th row, fast 404s in between, so results
    arrive as fast as the pipeline can settle them. The photos come from a server in another
    process, as a real avatar host would. `bench/gui_stall.py` also measures a list sorted by
    status, whose rows move live.

    The issue's target is 50 ms. On two shared cores a single scheduling hiccup of the machine can
    exceed that, so this test fails only at 250 ms: what per-row signals, model resets or proxy
    re-sorting cost (200-370 ms measured before they were removed). `bench/gui_stall.py` measures
    the figure against the 50 ms target; this test prints it too."""
    photos = [OBAMA, BIDEN, KIT, "faces/identities/rose_leslie/1.jpg"]
    with ImageServerProcess(faces_dir) as server:
        rows = [
            (f"user-{i:04d}", server.url(photos[(i // 50) % 4] if i % 50 == 0 else "status/404"))
            for i in range(2000)
        ]
        window.load_path(_write_csv(tmp_path / "big.csv", rows))
        stats = measure_stall(qtbot, window)
    print(f"\n2000-row batch: {stats}")
    counts = window.model.counts()
    assert counts[RowState.SUCCEEDED] + counts[RowState.FAILED] == 2000
    assert counts[RowState.SUCCEEDED] == 4
    assert stats.saw_rate, "the status bar never showed images per second"
    assert stats.worst_s < 0.250, f"the event loop stalled for {stats.worst_s * 1000:.0f} ms"


def test_selecting_a_row_previews_its_faces(
    qtbot, window: MainWindow, image_server, tmp_path: Path
) -> None:
    window.load_path(
        _write_csv(
            tmp_path / "users.csv",
            [("kit", image_server.url(KIT)), ("group", image_server.url(GROUP))],
        )
    )
    window.register()
    _wait_idle(qtbot, window)
    row = window.proxy.mapFromSource(window.model.index(window.model.row_for("group"), 1))
    with qtbot.waitSignal(window.preview.previewed, timeout=30_000) as blocker:
        window.table.selectRow(row.row())
    data = blocker.args[0]
    assert data.user_id == "group"
    assert data.face_count == 2  # both faces drawn, and the reason it failed
    assert data.error_code == ErrorCode.MULTIPLE_FACES


def test_http_endpoint_shares_the_windows_task_manager(
    qtbot, make_window, engine, image_server, tmp_path: Path
) -> None:
    """A task started over HTTP shows up live in the window's task history, and a task started
    in the window is readable over HTTP (real server on 127.0.0.1, real httpx client)."""
    qsettings = _settings(tmp_path, "api.ini")
    config = AppSettings()
    config.api.enabled, config.api.port = True, 0
    config.api.allow_private_urls = True  # the test's image server is on 127.0.0.1
    qsettings.setValue(SETTINGS_KEY, config.model_dump_json())
    window = make_window(engine=engine, qsettings=qsettings)
    assert window.api_server is not None
    url = window.api_server.url
    assert window.api_label.text() == f"API: {url}"
    body = {"users": [{"user_id": "via-http", "avatar_image_url": image_server.url(KIT)}]}
    # The call comes from another thread, as from another program: the window's event loop must
    # keep running to start the task.
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(httpx.post, f"{url}/faces/batch-register", json=body, timeout=30)
        qtbot.waitUntil(future.done, timeout=30_000)
        response = future.result()
    assert response.status_code == 200, response.text
    http_task = response.json()["task_id"]
    assert response.json()["total_users"] == 1
    qtbot.waitUntil(lambda: window.history.row_of(http_task) is not None, timeout=10_000)
    _wait_idle(qtbot, window)
    window.refresh_history()
    row = window.history.row_of(http_task)
    assert row is not None and window.history.tasks[row].status == TaskStatus.COMPLETED

    window.load_path(_write_csv(tmp_path / "gui.csv", [("via-gui", image_server.url(BIDEN))]))
    gui_task = window.register()
    _wait_idle(qtbot, window)
    status = httpx.get(f"{url}/faces/task-status/{gui_task}", timeout=30).json()
    assert status["status"] == "completed" and status["completed_items"] == 1
    assert status["results"][0]["user_id"] == "via-gui" and status["results"][0]["status"] is True
    window.shutdown()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)


def test_settings_refuse_an_exposed_endpoint_without_a_token(qtbot, make_window) -> None:
    window = make_window(load_models=False)
    dialog = SettingsDialog(window.settings, window)
    dialog.api_enabled.setChecked(True)
    dialog.api_host.setText("0.0.0.0")
    dialog.accept()
    assert dialog.result_settings() is None
    assert "token" in dialog.error.text()
    dialog.api_token.setText("s3cret-token")
    dialog.accept()
    settings = dialog.result_settings()
    assert settings is not None and settings.api.token == "s3cret-token"


def _store_settings(tmp_path: Path, name: str, **store: object) -> QSettings:
    qsettings = _settings(tmp_path, name)
    config = AppSettings(store=StoreConfig(**store))  # type: ignore[arg-type]
    qsettings.setValue(SETTINGS_KEY, config.model_dump_json())
    return qsettings


def test_window_runs_batches_in_a_postgres_store(
    qtbot, make_window, engine, image_server, pg_dsn: str, tmp_path: Path, monkeypatch
) -> None:
    """Saved settings never keep the DSN's password; libpq takes it from PGPASSWORD, as an
    operator's environment or ~/.pgpass would give it."""
    password = conninfo_to_dict(pg_dsn).get("password")
    if password:
        monkeypatch.setenv("PGPASSWORD", str(password))
    qsettings = _store_settings(tmp_path, "pg.ini", kind="postgres", dsn=pg_dsn)
    window = make_window(engine=engine, qsettings=qsettings, store=None)
    assert type(window.store).__name__ == "PostgresStore", window.store_banner.text()
    assert str(password or "") not in qsettings.value(SETTINGS_KEY)
    assert not window.store_banner.isVisible()
    window.load_path(_write_csv(tmp_path / "u.csv", [("pg-kit", image_server.url(KIT))]))
    task_id = window.register()
    _wait_idle(qtbot, window)
    assert _state(window, "pg-kit") == RowState.SUCCEEDED
    assert window.store.get_face("pg-kit") is not None
    window.refresh_history()
    assert window.history.row_of(task_id) is not None  # type: ignore[arg-type]


def test_settings_dialog_tests_the_store_connection(
    qtbot, make_window, pg_dsn: str, tmp_path: Path
) -> None:
    window = make_window(load_models=False)
    settings = window.settings.model_copy(
        update={"store": StoreConfig(kind="postgres", dsn=pg_dsn)}  # type: ignore[arg-type]
    )
    dialog = SettingsDialog(settings, window)
    password = str(conninfo_to_dict(pg_dsn).get("password") or "")
    if password:  # shown apart, so the address stays readable on screen
        assert password not in dialog.dsn.text()
        assert dialog.dsn_password.text() == password
    with qtbot.waitSignal(dialog.connectionTested, timeout=30_000) as ok:
        dialog.test_button.click()
    assert ok.args[0].ok, ok.args[0].message
    dialog.dsn.setText("postgresql://nobody@127.0.0.1:9/none")
    dialog.dsn_password.clear()
    with qtbot.waitSignal(dialog.connectionTested, timeout=30_000) as bad:
        dialog.test_button.click()
    assert not bad.args[0].ok
    assert bad.args[0].problem == "unreachable"
    assert dialog.test_result.text() == bad.args[0].message


def test_a_store_that_cannot_open_turns_batches_off(make_window, tmp_path: Path) -> None:
    """Nothing listens on port 9 of 127.0.0.1: the configured store cannot open, and the window
    must not quietly enroll into another one."""
    qsettings = _store_settings(
        tmp_path, "down.ini", kind="postgres", dsn="postgresql://nobody@127.0.0.1:9/none"
    )
    window = make_window(load_models=False, qsettings=qsettings, store=None)
    assert window.store_banner.isVisible()
    assert "Could not open PostgreSQL" in window.store_banner.text()
    window.paste_text("x,http://127.0.0.1:9/x.jpg")
    assert not window.act_delete.isEnabled() and not window.act_register.isEnabled()
    assert window.delete_faces() is None


def test_closing_during_a_batch_asks_then_cancels_and_saves_settings(
    qtbot, make_window, engine, image_server, tmp_path: Path
) -> None:
    answers: list[bool] = [False, True]
    asked: list[str] = []

    def confirm(_title: str, text: str) -> bool:
        asked.append(text)
        return answers.pop(0)

    window = make_window(engine=engine, confirm=confirm)
    window.settings.batch.fetch_workers = 1
    rows = [(f"slow-{i}", image_server.url(f"slow/300/{KIT}")) for i in range(20)]
    window.load_path(_write_csv(tmp_path / "slow.csv", rows))
    task_id = window.register()
    assert task_id is not None
    assert not window.close()  # the operator says no: the window stays, the batch goes on
    assert window.tasks.running_tasks() == [task_id]
    assert window.close()  # yes: cancel, wait, save, close
    assert "1 batch is running" in asked[0]
    assert not window.tasks.running_tasks()
    reopened = SqliteStore(tmp_path / "faces.db")
    try:
        final = reopened.get_task(task_id, with_results=False)
        assert final is not None and final.status == TaskStatus.CANCELLED
    finally:
        reopened.close()
    assert _settings(tmp_path).value(SETTINGS_KEY)  # settings were written on the way out
