"""The operator's window: user list → task → runner → store → table model → view.

The window owns no batch logic. It turns operator actions into `TaskManager` calls and turns the
manager's coalesced progress signals into row updates; the store stays the record of what happened,
so the task history, the HTTP endpoint and the CLI all see the same tasks.
"""

from __future__ import annotations

import contextlib
import gc
import html
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QByteArray,
    QCoreApplication,
    QItemSelectionModel,
    QModelIndex,
    QSettings,
    QSize,
    Qt,
    QTimer,
)
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from facebatch_gui.core.apiconfig import ApiConfigError
from facebatch_gui.core.appsettings import AppSettings
from facebatch_gui.core.engine import FaceEngine, resolve_model_dir
from facebatch_gui.core.errors import ErrorCode, FaceBatchError
from facebatch_gui.core.imaging import warm_up as warm_up_decoding
from facebatch_gui.core.records import ItemResult, Operation, TaskRecord
from facebatch_gui.core.report import write_failures_csv, write_results_csv, write_user_list_csv
from facebatch_gui.core.store.base import FaceStore
from facebatch_gui.core.store.config import open_store
from facebatch_gui.core.store.sqlite import SqliteStore
from facebatch_gui.core.userlist import entries_from_pasted_text, load_user_list
from facebatch_gui.qt.delegates import UserRowDelegate
from facebatch_gui.qt.icons import action_icon, app_icon, state_icons
from facebatch_gui.qt.log_dock import LogDock
from facebatch_gui.qt.preview import PreviewPane
from facebatch_gui.qt.runner import TaskManager, TaskProgress
from facebatch_gui.qt.service import QtTaskService
from facebatch_gui.qt.settings_dialog import SettingsDialog
from facebatch_gui.qt.task_history import TASK_ID_ROLE, TaskHistoryModel
from facebatch_gui.qt.userlist_model import (
    Column,
    InsertRowsCommand,
    RemoveRowsCommand,
    ReplaceRowsCommand,
    RowState,
    UserFilterProxy,
    UserListModel,
    UserRow,
    rows_from_entries,
    rows_from_results,
)
from facebatch_gui.qt.window_actions import build_actions
from facebatch_gui.qt.workers import JobRunner

if TYPE_CHECKING:
    from facebatch_gui.api.server import ApiServer
    from facebatch_gui.qt.first_run import FirstRunDialog
    from facebatch_gui.qt.models_dialog import ModelsDialog

log = logging.getLogger("facebatch")
SETTINGS_KEY = "settings/json"
LIST_SUFFIXES = {".csv", ".json", ".txt", ".tsv"}


def _format_eta(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class MainWindow(QMainWindow):
    # actions, menus and toolbar: made by window_actions.build_actions
    act_about: QAction
    act_add: QAction
    act_cancel: QAction
    act_delete: QAction
    act_export_failures: QAction
    act_export_results: QAction
    act_find: QAction
    act_models: QAction
    act_open: QAction
    act_open_folder: QAction
    act_paste: QAction
    act_quit: QAction
    act_redo: QAction
    act_register: QAction
    act_remove: QAction
    act_retry: QAction
    act_save: QAction
    act_settings: QAction
    act_undo: QAction
    help_menu: QMenu
    toolbar: QToolBar
    tools_menu: QMenu
    view_menu: QMenu

    def __init__(
        self,
        qsettings: QSettings | None = None,
        *,
        store: FaceStore | None = None,
        engine: FaceEngine | None = None,
        load_models: bool = True,
        confirm: Callable[[str, str], bool] | None = None,
    ) -> None:
        super().__init__()
        self.setWindowTitle("FaceBatch")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.qsettings = qsettings or QSettings()
        self.settings, problem = AppSettings.from_json(self._stored_json())
        self._confirm_fn = confirm
        self.jobs = JobRunner(max_threads=2, parent=self)
        self._engine_state = "none"
        self._engine_generation = 0
        self._tracked: dict[str, Operation] = {}  # tasks whose results update the table
        self._current_task: str | None = None
        self._shown_task: str | None = None
        self._list_path: Path | None = None
        self._ui_cache: dict[str, object] = {}
        self._history_job = False
        self.api_server: ApiServer | None = None
        self._api_service: QtTaskService | None = None
        self._selected_count = 0

        self.undo_stack = QUndoStack(self)
        self.model = UserListModel(self.undo_stack, state_icons=state_icons(), parent=self)
        self.proxy = UserFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.history = TaskHistoryModel(self)

        self._store_problem: str | None = None
        self.store: FaceStore = store if store is not None else self._open_configured_store()
        self.tasks = TaskManager(self.store, engine, parent=self)
        self._connect_tasks()

        self.log_dock = LogDock(self)
        logging.getLogger().addHandler(self.log_dock.handler)
        if log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)

        build_actions(self)
        self._build_central()
        self._build_docks()
        self._build_status_bar()
        self.model.countsChanged.connect(self._update_counts)
        self.undo_stack.cleanChanged.connect(self._update_title)
        self._history_timer = QTimer(self)
        self._history_timer.setInterval(2000)
        self._history_timer.timeout.connect(self._refresh_history_soon)
        self._history_timer.start()
        self._restore_window_state()
        self.refresh_history()
        self._update_counts()
        self._update_actions()
        self.apply_api_settings()
        if problem:
            log.warning(problem)
        if engine is not None:
            self._set_engine_ready(engine)
        elif load_models:
            QTimer.singleShot(0, self.reload_models)
        else:
            self._set_engine_state("none", "Models: not loaded")

    # -- construction ------------------------------------------------------------------------
    def _build_central(self) -> None:
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        self.banner.setStyleSheet(
            "QLabel { background: #fff3e0; color: #5d4037; border: 1px solid #ffcc80;"
            " border-radius: 4px; padding: 6px; }"
        )
        self.banner_button = QPushButton("Choose model folder…")
        self.banner_button.clicked.connect(self.choose_model_folder)
        banner_row = QHBoxLayout()
        banner_row.addWidget(self.banner, 1)
        banner_row.addWidget(self.banner_button)
        self.banner_packs_button = QPushButton("Get a model pack…")
        self.banner_packs_button.clicked.connect(lambda: self.open_models_dialog())
        banner_row.addWidget(self.banner_packs_button)
        self.banner_box = QWidget()
        self.banner_box.setLayout(banner_row)
        self.banner_box.hide()
        self.store_banner = QLabel()
        self.store_banner.setWordWrap(True)
        self.store_banner.setTextFormat(Qt.TextFormat.RichText)
        self.store_banner.setStyleSheet(
            "QLabel { background: #ffebee; color: #b71c1c; border: 1px solid #ef9a9a;"
            " border-radius: 4px; padding: 6px; }"
        )
        self.store_banner.hide()

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by user id, URL or error…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.proxy.set_text_filter)
        self.filter_buttons = QButtonGroup(self)
        filters = QHBoxLayout()
        filters.addWidget(self.filter_edit, 1)
        self.filter_button_map: dict[str, QPushButton] = {}
        for i, name in enumerate(UserFilterProxy.FILTERS):
            button = QPushButton(name)
            button.setCheckable(True)
            button.setChecked(i == 0)
            button.setFlat(False)
            self.filter_buttons.addButton(button, i)
            self.filter_button_map[name] = button
            filters.addWidget(button)
        self.filter_buttons.idClicked.connect(
            lambda i: self.proxy.set_state_filter(list(UserFilterProxy.FILTERS)[i])
        )

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.AnyKeyPressed
        )
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        vheader = self.table.verticalHeader()
        vheader.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vheader.setDefaultSectionSize(36)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setStretchLastSection(False)
        widths = {
            Column.FACE: 44,
            Column.USER_ID: 140,
            Column.URL: 260,
            Column.STATUS: 112,
            Column.ERROR: 320,
            Column.DUPLICATE: 130,
            Column.SCORE: 80,
        }
        for col, width in widths.items():
            header.resizeSection(col, width)
        header.setSectionResizeMode(Column.ERROR, QHeaderView.ResizeMode.Stretch)
        self.table.setIconSize(QSize(18, 18))
        self.table.setItemDelegate(UserRowDelegate(self.proxy, self.model, self.table))
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.table.addActions([self.act_remove, self.act_paste])
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        for action in (self.act_register, self.act_delete, self.act_retry):
            self.table.addAction(action)

        self.preview = PreviewPane()
        self.preview.set_context(self._engine_or_none, self.store, self.settings.batch)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(filters)
        left_layout.addWidget(self.table)
        splitter.addWidget(left)
        splitter.addWidget(self.preview)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([900, 340])
        self.splitter = splitter
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.store_banner)
        layout.addWidget(self.banner_box)
        layout.addWidget(splitter, 1)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        dock = QDockWidget("Task history", self)
        dock.setObjectName("historyDock")
        self.history_view = QTableView()
        self.history_view.setModel(self.history)
        self.history_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.history_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.history_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.history_view.verticalHeader().hide()
        self.history_view.horizontalHeader().setStretchLastSection(True)
        self.history_view.setAlternatingRowColors(True)
        self.history_view.selectionModel().currentRowChanged.connect(self._history_selected)
        self.history_view.doubleClicked.connect(
            lambda index: self.show_task(self.history.data(index, TASK_ID_ROLE))
        )
        self.resume_button = QPushButton(action_icon("resume"), "Resume")
        self.resume_button.setToolTip("Run the unfinished items of an interrupted task")
        self.resume_button.clicked.connect(self.resume_selected_task)
        self.resume_button.setEnabled(False)
        self.show_button = QPushButton("Show in table")
        self.show_button.clicked.connect(self._show_selected_task)
        self.show_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.show_button)
        buttons.addWidget(self.resume_button)
        buttons.addStretch(1)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(buttons)
        layout.addWidget(self.history_view)
        dock.setWidget(body)
        self.history_dock = dock
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.tabifyDockWidget(dock, self.log_dock)
        dock.raise_()
        self.resizeDocks([dock], [190], Qt.Orientation.Vertical)
        self.view_menu.addAction(dock.toggleViewAction())
        self.view_menu.addAction(self.log_dock.toggleViewAction())
        self.view_menu.addAction(self.toolbar.toggleViewAction())

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.models_label = QLabel("Models: …")
        self.api_label = QLabel()
        self.api_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.counts_label = QLabel()
        self.rate_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.progress.hide()
        bar.addPermanentWidget(self.counts_label)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.rate_label)
        bar.addPermanentWidget(self.api_label)
        bar.addPermanentWidget(self.models_label)

    # -- settings persistence -----------------------------------------------------------------
    def _stored_json(self) -> str | None:
        value = self.qsettings.value(SETTINGS_KEY)
        return str(value) if value else None

    def save_settings(self) -> None:
        self.qsettings.setValue(SETTINGS_KEY, self.settings.model_dump_json())
        self.qsettings.setValue("window/geometry", self.saveGeometry())
        self.qsettings.setValue("window/state", self.saveState())
        self.qsettings.sync()

    def _restore_window_state(self) -> None:
        geometry = self.qsettings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        state = self.qsettings.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)

    def apply_settings(self, new: AppSettings) -> None:
        old, self.settings = self.settings, new
        self.save_settings()
        if new.store != old.store:
            self._reopen_store()
        elif new.api != old.api:
            self.apply_api_settings()
        q_old, q_new = old.batch.quality, new.batch.quality
        if new.model_dir != old.model_dir or (q_old.det_size, q_old.det_threshold) != (
            q_new.det_size,
            q_new.det_threshold,
        ):
            self.reload_models()
        self.preview.set_context(self._engine_or_none, self.store, self.settings.batch)
        log.info("Settings saved")

    def open_settings(self) -> None:
        engine = self._engine_or_none()
        dialog = SettingsDialog(self.settings, self, pack=engine.identity if engine else None)
        if dialog.exec() and dialog.result_settings() is not None:
            self.apply_settings(dialog.result_settings())  # type: ignore[arg-type]

    def _reopen_store(self) -> None:
        if self.tasks.running_tasks():
            log.warning("The store changes after the running batch ends: restart FaceBatch then")
            return
        store = self._open_configured_store()
        self.store.close()
        self.store = store
        engine = self._engine_or_none()
        self.tasks.deleteLater()
        self.tasks = TaskManager(self.store, engine, parent=self)
        self._connect_tasks()
        self.refresh_history()
        self.apply_api_settings()  # the endpoint follows the new task manager

    def _open_configured_store(self) -> FaceStore:
        """The configured store, or, when it cannot be opened, the embedded one with batches
        turned off until the settings are fixed: an operator must never enroll into a store
        they did not choose."""
        config = self.settings.store
        try:
            store = open_store(config)
            store.recover_interrupted()
        except (FaceBatchError, OSError) as exc:
            self._store_problem = f"Could not open {config.describe()}: {exc}"
            log.error("%s", self._store_problem)
            return SqliteStore(None)
        self._store_problem = None
        log.info("Store: %s", config.describe())
        return store

    # -- HTTP endpoint --------------------------------------------------------------------------
    def apply_api_settings(self) -> None:
        """Start, restart or stop the embedded endpoint to match the settings. It talks to the same
        task manager as this window, so its tasks show up in the history like the window's own."""
        self._stop_api()
        config = self.settings.api
        if not config.enabled:
            self._ui("api", "API: off", self.api_label.setText)
            return
        from facebatch_gui.api.server import ApiServer  # FastAPI costs 0.4 s: only when wanted

        self._api_service = QtTaskService(self.tasks)
        server = ApiServer(self._api_service, config, settings=lambda: self.settings.batch)
        try:
            url = server.start()
        except (ApiConfigError, OSError) as exc:
            self._api_service.close()
            self._api_service = None
            log.error("The HTTP endpoint did not start: %s", exc)
            self._ui("api", "API: failed (see log)", self.api_label.setText)
            return
        self.api_server = server
        log.info("HTTP endpoint listening on %s (OpenAPI at %s/docs)", url, url)
        self._ui("api", f"API: {url}", self.api_label.setText)

    def _stop_api(self) -> None:
        if self._api_service is not None:
            self._api_service.close()
            self._api_service = None
        if self.api_server is not None:
            self.api_server.stop()
            self.api_server = None

    # -- models -------------------------------------------------------------------------------
    def _engine_or_none(self) -> FaceEngine | None:
        return self.tasks._engine if self.tasks.has_engine() else None  # type: ignore[return-value]

    def reload_models(self) -> None:
        self._engine_generation += 1
        generation = self._engine_generation
        model_dir, quality = self.settings.model_dir, self.settings.batch.quality
        self._set_engine_state("loading", "Models: loading…")

        def load() -> FaceEngine:
            path = resolve_model_dir(model_dir, download=False)
            return FaceEngine(path, det_size=quality.det_size, det_threshold=quality.det_threshold)

        def done(engine: FaceEngine) -> None:
            if generation == self._engine_generation:
                self._set_engine_ready(engine)

        def failed(exc: Exception) -> None:
            if generation == self._engine_generation:
                self._set_engine_state("missing", "Models: none", str(exc))
                log.error("%s", exc)

        self.jobs.run(load, done, failed)

    def _set_engine_ready(self, engine: FaceEngine) -> None:
        # Everything loaded so far (Qt, ONNX Runtime, InsightFace: ~130,000 objects) lives as long
        # as the app. Frozen out of the collector, a full collection during a batch takes ~10-35
        # ms instead of 65-100 ms, and it holds the GIL, so the GUI thread waits for it.
        gc.freeze()
        self.jobs.run(warm_up_decoding, lambda _none: None)
        self.tasks.set_engine(engine)
        pack = engine.identity
        self._set_engine_state("ready", f"Models: {pack.name} ({pack.embedding_dim}-d)")
        log.info("Models loaded: %s from %s", pack.name, engine.model_dir)
        self.preview.set_context(self._engine_or_none, self.store, self.settings.batch)

    def _set_engine_state(self, state: str, label: str, problem: str | None = None) -> None:
        self._engine_state = state
        self.models_label.setText(label)
        if state == "missing":
            self.banner.setText(
                f"<b>No face model pack is available.</b> {problem or ''}<br>"
                "You can still load and edit user lists. To register faces, choose a folder that "
                "holds an InsightFace pack (.onnx files), or copy one from another machine."
            )
            self.banner_box.show()
        else:
            self.banner_box.hide()
        self._update_actions()

    def _show_store_problem(self, problem: str | None) -> None:
        self.store_banner.setText(
            f"<b>{html.escape(problem)}</b><br>Register and Delete are off until the store in "
            "Tools → Settings → Models &amp; store can be opened (Test connection says why)."
            if problem
            else ""
        )
        self.store_banner.setVisible(problem is not None)

    def choose_model_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a model pack folder")
        if path:
            self.apply_settings(self.settings.model_copy(update={"model_dir": path}))

    # -- loading and saving lists ---------------------------------------------------------------
    def open_list_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open user list", "", "User lists (*.csv *.json *.tsv *.txt);;All files (*)"
        )
        if path:
            self.load_path(Path(path))

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of photos")
        if path:
            self.load_path(Path(path))

    def load_path(self, path: Path) -> bool:
        try:
            entries = load_user_list(path)
        except FaceBatchError as exc:
            log.error("Cannot open %s: %s", path, exc)
            QMessageBox.warning(self, "Cannot open the list", str(exc))
            return False
        rows = rows_from_entries(entries)
        self.undo_stack.push(ReplaceRowsCommand(self.model, rows, f"Open {path.name}"))
        self.undo_stack.setClean()
        self._list_path = path if path.is_file() else None
        self._shown_task = None
        invalid = self.model.counts()[RowState.INVALID]
        log.info(
            "Opened %s: %d users%s",
            path,
            len(rows),
            f", {invalid} invalid (marked in the list)" if invalid else "",
        )
        self._update_title()
        return True

    def save_list_dialog(self) -> None:
        start = str(self._list_path.with_suffix(".csv")) if self._list_path else "users.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Save user list", start, "CSV (*.csv)")
        if path:
            self.save_list(Path(path))

    def save_list(self, path: Path) -> None:
        write_user_list_csv((row.entry() for row in self.model.rows), path)
        self.undo_stack.setClean()
        self._list_path = path
        log.info("Saved %d users to %s", len(self.model.rows), path)
        self._update_title()

    # -- editing ------------------------------------------------------------------------------
    def _selected_source_rows(self) -> list[int]:
        rows = {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        return sorted(r for r in rows if r >= 0)

    def add_row(self) -> None:
        position = len(self.model.rows)
        self.undo_stack.push(InsertRowsCommand(self.model, position, [UserRow("")], "Add row"))
        proxy_index = self.proxy.mapFromSource(self.model.index(position, Column.USER_ID))
        if proxy_index.isValid():
            self.table.setCurrentIndex(proxy_index)
            self.table.edit(proxy_index)

    def remove_selected_rows(self) -> None:
        rows = self._selected_source_rows()
        if rows:
            self.undo_stack.push(RemoveRowsCommand(self.model, rows))

    def paste_rows(self) -> None:
        self.paste_text(QGuiApplication.clipboard().text())

    def paste_text(self, text: str) -> int:
        entries = entries_from_pasted_text(text)
        if not entries:
            self.statusBar().showMessage("Nothing to paste: copy user_id and URL columns", 5000)
            return 0
        selected = self._selected_source_rows()
        position = selected[-1] + 1 if selected else len(self.model.rows)
        self.undo_stack.push(
            InsertRowsCommand(
                self.model, position, rows_from_entries(entries), f"Paste {len(entries)} rows"
            )
        )
        return len(entries)

    # -- batches ------------------------------------------------------------------------------
    def _target_rows(self) -> list[UserRow]:
        selected = self._selected_source_rows()
        if len(selected) > 0:
            return [self.model.rows[i] for i in selected]
        return list(self.model.rows)

    def _confirm(self, title: str, text: str) -> bool:
        if self._confirm_fn is not None:
            return self._confirm_fn(title, text)
        answer = QMessageBox.question(
            self,
            title,
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _runnable(self, rows: Sequence[UserRow], operation: Operation) -> list[UserRow]:
        out: list[UserRow] = []
        seen: set[str] = set()
        for row in rows:
            if row.user_id in seen:
                continue
            if not self.model.can_run(row, operation):
                continue
            seen.add(row.user_id)
            out.append(row)
        skipped = len(rows) - len(out)
        if skipped:
            log.warning(
                "%d invalid row%s left out of the batch: fix %s first",
                skipped,
                "s" if skipped != 1 else "",
                "them" if skipped != 1 else "it",
            )
        return out

    def register(self) -> str | None:
        if self._store_problem is not None:
            return None
        if not self.tasks.has_engine():
            message = (
                "The models are still loading"
                if self._engine_state == "loading"
                else "No model pack is loaded: choose one in Settings"
            )
            QMessageBox.information(self, "Cannot register yet", message)
            return None
        return self._start(
            Operation.REGISTER, self._runnable(self._target_rows(), Operation.REGISTER)
        )

    def delete_faces(self) -> str | None:
        if self._store_problem is not None:
            return None
        rows = self._runnable(self._target_rows(), Operation.DELETE)
        if not rows:
            return None
        n = len(rows)
        if not self._confirm(
            "Delete faces",
            f"Delete the stored faces of {n} user{'s' if n != 1 else ''}? This cannot be undone.",
        ):
            return None
        return self._start(Operation.DELETE, rows)

    def retry_failed(self) -> list[str]:
        failed = [row for row in self.model.rows if row.state.retryable]
        if not failed:
            self.statusBar().showMessage("No failed rows to retry", 5000)
            return []
        started: list[str] = []
        for operation in (Operation.REGISTER, Operation.DELETE):
            rows = [
                r
                for r in failed
                if (r.result.operation if r.result else Operation.REGISTER) == operation
            ]
            if operation == Operation.REGISTER and rows and not self.tasks.has_engine():
                log.error("Cannot retry registrations: no model pack is loaded")
                continue
            task_id = self._start(operation, rows) if rows else None
            if task_id:
                started.append(task_id)
        return started

    def _start(self, operation: Operation, rows: Sequence[UserRow]) -> str | None:
        if not rows:
            self.statusBar().showMessage("No rows to run", 5000)
            return None
        entries = [row.entry() for row in rows]
        try:
            if operation == Operation.REGISTER:
                task_id = self.tasks.start_register(entries, self.settings.batch)
            else:
                task_id = self.tasks.start_delete(entries, self.settings.batch)
        except FaceBatchError as exc:
            log.error("Cannot start the batch: %s", exc)
            QMessageBox.warning(self, "Cannot start the batch", str(exc))
            return None
        self._tracked[task_id] = operation
        self._current_task = task_id
        self.model.hold_resort(True)
        self.model.mark_queued(row.user_id for row in rows)
        self._ui("progress-max", max(len(entries), 1), self.progress.setMaximum)
        self.progress.setValue(0)
        self.progress.show()
        self._started_at = time.monotonic()
        log.info("Task %s: %s %d users", task_id[:8], operation.value, len(entries))
        self.refresh_history()
        self._update_actions()
        return task_id

    def cancel_tasks(self) -> None:
        for task_id in self.tasks.running_tasks():
            self.tasks.cancel(task_id)
        self.statusBar().showMessage("Cancelling…", 3000)

    # -- task signals ---------------------------------------------------------------------------
    def _connect_tasks(self) -> None:
        self.tasks.taskStarted.connect(lambda _t: self._refresh_history_soon())
        self.tasks.taskProgressed.connect(self._on_progress)
        self.tasks.taskErrored.connect(self._on_task_error)
        self.tasks.taskFinished.connect(self._on_task_finished)

    def _on_progress(self, progress: TaskProgress) -> None:
        self.history.apply_progress(progress)
        if progress.task_id in self._tracked or progress.task_id == self._shown_task:
            enrolled = self.model.apply_results(progress.results)
            if enrolled:
                self._load_thumbnails(enrolled)
        if progress.task_id == self._current_task:
            self._ui("progress-max", max(progress.total, 1), self.progress.setMaximum)
            self.progress.setValue(progress.completed)
            left = progress.total - progress.completed
            eta = (
                f" · ETA {_format_eta(left / progress.rate)}" if progress.rate > 0 and left else ""
            )
            self._ui("rate", f"{progress.rate:.1f} img/s{eta}", self.rate_label.setText)

    def _on_task_error(self, task_id: str, message: str) -> None:
        log.error("Task %s failed: %s", task_id[:8], message)

    def _on_task_finished(self, task_id: str) -> None:
        self.model.flush()
        runner = self.tasks.runners.get(task_id)
        if runner is not None:
            level = logging.WARNING if runner.failed else logging.INFO
            cancelled = runner.counts_by_code.get("cancelled", 0)
            log.log(
                level,
                "Task %s finished: %d succeeded, %d failed of %d%s",
                task_id[:8],
                runner.completed - runner.failed,
                runner.failed,
                runner.total,
                f" ({cancelled} cancelled: resumable from the history)" if cancelled else "",
            )
        if task_id == self._current_task:
            self._ui("rate", "", self.rate_label.setText)
            self.progress.hide()
        self._refresh_history_soon()
        self._update_actions()
        if not self.tasks.running_tasks():
            self.model.hold_resort(False)
            # Between batches: collect what the task left, then freeze the rest (the rows and their
            # results stay), so the next batch's full collections stay as short as the first's.
            started = time.perf_counter()
            gc.collect()
            gc.freeze()
            log.debug("gc between batches: %.1f ms", (time.perf_counter() - started) * 1000)

    def _load_thumbnails(self, user_ids: list[str]) -> None:
        store = self.store

        def load() -> dict[str, QImage]:
            images: dict[str, QImage] = {}
            for uid in user_ids:
                face = store.get_face(uid)
                if face is not None and face.thumbnail_jpeg:
                    image = QImage.fromData(face.thumbnail_jpeg)
                    if not image.isNull():
                        images[uid] = image
            return images

        self.jobs.run(load, self.model.set_thumbnails)

    # -- history ------------------------------------------------------------------------------
    def refresh_history(self) -> None:
        """Read the task list now (operator actions); timers use `_refresh_history_soon`."""
        try:
            tasks = self.store.list_tasks(200)
        except FaceBatchError as exc:
            log.error("Cannot read the task history: %s", exc)
            return
        self._apply_history(tasks)

    def _refresh_history_soon(self) -> None:
        """The periodic refresh reads the store off the GUI thread: with PostgreSQL or Supabase
        each read is a network round trip. One read at a time; a tick that finds one in flight
        is skipped."""
        if self._history_job:
            return
        self._history_job = True
        store = self.store

        def done(tasks: list[TaskRecord]) -> None:
            self._history_job = False
            if store is self.store and not getattr(self, "_closed", False):
                self._apply_history(tasks)

        def failed(exc: Exception) -> None:
            self._history_job = False
            log.error("Cannot read the task history: %s", exc)

        self.jobs.run(lambda: store.list_tasks(200), done, failed)

    def _apply_history(self, tasks: list[TaskRecord]) -> None:
        for t in tasks:  # counts of tasks running here are fresher in memory than in the store
            runner = self.tasks.runners.get(t.task_id)
            if runner is not None and runner.running:
                t.completed_items, t.failed_items = runner.completed, runner.failed
                t.progress = TaskRecord.progress_of(runner.completed, runner.total)
        current = self._selected_task_id()
        self.history.set_tasks(tasks)
        if current is not None:
            row = self.history.row_of(current)
            if row is not None and self.history_view.currentIndex().row() != row:
                self.history_view.selectionModel().setCurrentIndex(
                    self.history.index(row, 0),
                    QItemSelectionModel.SelectionFlag.ClearAndSelect
                    | QItemSelectionModel.SelectionFlag.Rows,
                )
        self._update_history_buttons()

    def _selected_task_id(self) -> str | None:
        index = self.history_view.currentIndex() if hasattr(self, "history_view") else None
        if index is None or not index.isValid():
            return None
        value = self.history.data(index, TASK_ID_ROLE)
        return str(value) if value else None

    def _history_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._update_history_buttons()
        task_id = self.history.data(current, TASK_ID_ROLE) if current.isValid() else None
        if task_id and task_id != self._shown_task and task_id not in self._tracked:
            self.show_task(str(task_id))

    def _show_selected_task(self) -> None:
        task_id = self._selected_task_id()
        if task_id:
            self.show_task(task_id)

    def _update_history_buttons(self) -> None:
        task_id = self._selected_task_id()
        task = self.history.task(self.history_view.currentIndex().row()) if task_id else None
        running = set(self.tasks.running_tasks())
        self.show_button.setEnabled(task is not None)
        self.resume_button.setEnabled(
            task is not None and task.status.is_resumable and task.task_id not in running
        )

    def show_task(self, task_id: str) -> bool:
        """Show a task's users and outcomes in the table (undo brings the previous list back)."""
        record = self.store.get_task(task_id)
        if record is None:
            return False
        rows = rows_from_results(record.results)
        done = {r.user_id for r in record.results}
        pending = [e for _i, e in self.store.unfinished_items(task_id) if e.user_id not in done]
        rows += rows_from_entries(pending)
        self.undo_stack.push(ReplaceRowsCommand(self.model, rows, f"Show task {task_id[:8]}"))
        self._shown_task = task_id
        enrolled = [
            r.user_id for r in record.results if r.status and r.operation == Operation.REGISTER
        ]
        if enrolled:
            self._load_thumbnails(enrolled)
        self.statusBar().showMessage(
            f"Showing task {task_id[:8]} ({record.operation.value}, {record.status.value}); "
            "Undo returns to the previous list",
            8000,
        )
        return True

    def resume_selected_task(self) -> str | None:
        task_id = self._selected_task_id()
        if not task_id:
            return None
        return self.resume_task(task_id)

    def resume_task(self, task_id: str) -> str | None:
        record = self.store.get_task(task_id, with_results=False)
        if record is None:
            return None
        if record.operation == Operation.REGISTER and not self.tasks.has_engine():
            QMessageBox.information(self, "Cannot resume yet", "No model pack is loaded")
            return None
        self.show_task(task_id)
        pending = [e.user_id for _i, e in self.store.unfinished_items(task_id)]
        try:
            self.tasks.resume(task_id)
        except FaceBatchError as exc:
            log.error("Cannot resume %s: %s", task_id[:8], exc)
            return None
        self._tracked[task_id] = record.operation
        self._current_task = task_id
        self.model.hold_resort(True)
        self.model.mark_queued(pending)
        self._ui("progress-max", max(record.total_items, 1), self.progress.setMaximum)
        self.progress.show()
        log.info("Task %s resumed: %d users left", task_id[:8], len(pending))
        self.refresh_history()
        self._update_actions()
        return task_id

    # -- export -------------------------------------------------------------------------------
    def export_failures_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export failures", "failures.csv", "CSV (*.csv)"
        )
        if path:
            self.export_failures(Path(path))

    def export_failures(self, path: Path) -> int:
        failed = [r.result for r in self.model.rows if r.result is not None and not r.result.status]
        invalid = [
            ItemResult.failure(
                r.entry(), Operation.REGISTER, ErrorCode.INVALID_INPUT, r.problem or ""
            )
            for r in self.model.rows
            if r.state == RowState.INVALID
        ]
        count = write_failures_csv([*failed, *invalid], path)
        log.info("Wrote %d failures to %s", count, path)
        self.statusBar().showMessage(f"Wrote {count} failures to {path}", 8000)
        return count

    def export_results_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export results", "results.csv", "CSV (*.csv)")
        if path:
            self.export_results(Path(path))

    def export_results(self, path: Path) -> int:
        count = write_results_csv(
            ((r.entry(), r.state.value, r.result, r.problem) for r in self.model.rows), path
        )
        log.info("Wrote %d rows to %s", count, path)
        return count

    # -- view state ---------------------------------------------------------------------------
    def _selection_changed(self) -> None:
        self._selected_count = len(self._selected_source_rows())
        self._update_actions()
        current = self.table.currentIndex()
        rows = self._selected_source_rows()
        if len(rows) != 1:
            if not rows:
                self.preview.clear()
            return
        row = self.model.rows[rows[0]]
        if current.isValid() and row.user_id:
            self.preview.show_row(row.user_id, row.avatar_image_url, row.result)

    def _update_counts(self) -> None:
        counts = self.model.counts()
        total = len(self.model.rows)
        done = counts[RowState.SUCCEEDED]
        failed = counts[RowState.FAILED] + counts[RowState.CANCELLED]
        queued = counts[RowState.QUEUED]
        invalid = counts[RowState.INVALID]
        parts = [f"{total} users", f"✔ {done} done", f"✖ {failed} failed"]
        if queued:
            parts.append(f"{queued} queued")
        if invalid:
            parts.append(f"⚠ {invalid} invalid")
        self._ui("counts", "  ·  ".join(parts), self.counts_label.setText)
        labels = {
            "All": total,
            "Pending": counts[RowState.PENDING] + queued + invalid,
            "Succeeded": done,
            "Failed": failed + invalid,
        }
        for name, button in self.filter_button_map.items():
            self._ui(f"filter-{name}", f"{name} ({labels[name]})", button.setText)
        self._update_actions(counts)

    def _ui(self, key: str, value: object, setter: Callable[[Any], object]) -> None:
        """Call a widget setter only when its value changes. During a batch this runs every tick,
        and each Qt call may give the GIL to a pipeline thread and wait to get it back."""
        if self._ui_cache.get(key, _UNSET) != value:
            self._ui_cache[key] = value
            setter(value)

    def _update_actions(self, states: Counter[RowState] | None = None) -> None:
        if not hasattr(self, "table"):
            return
        rows = self.model.rows
        selected = self._selected_count
        n = selected or len(rows)
        scope = f"{selected} selected" if selected else f"all {n}"
        running = bool(self.tasks.running_tasks())
        states = states if states is not None else self.model.counts()
        retryable = states[RowState.FAILED] + states[RowState.CANCELLED]
        ui = self._ui
        ui("register-text", f"Register ({scope})", self.act_register.setText)
        ui("delete-text", f"Delete faces ({scope})", self.act_delete.setText)
        store_ok = self._store_problem is None
        ready = n > 0 and store_ok
        ui("register", ready and self._engine_state == "ready", self.act_register.setEnabled)
        ui("delete", ready, self.act_delete.setEnabled)
        ui("store-banner", self._store_problem, self._show_store_problem)
        ui("cancel", running, self.act_cancel.setEnabled)
        ui("retry", retryable > 0, self.act_retry.setEnabled)
        ui("remove", selected > 0, self.act_remove.setEnabled)
        ui(
            "failures",
            retryable + states[RowState.INVALID] > 0,
            self.act_export_failures.setEnabled,
        )
        ui("results", bool(rows), self.act_export_results.setEnabled)
        ui("save", bool(rows), self.act_save.setEnabled)

    def _update_title(self) -> None:
        name = self._list_path.name if self._list_path else "untitled"
        dirty = "" if self.undo_stack.isClean() else " *"
        self.setWindowTitle(f"FaceBatch — {name}{dirty}")

    def show_about(self) -> None:
        from facebatch_gui.qt.about_dialog import AboutDialog

        AboutDialog(self).exec()

    def open_models_dialog(self) -> ModelsDialog:
        """Tools → Model packs… and the banner's button: one non-modal dialog per window."""
        from facebatch_gui.qt.models_dialog import open_models_dialog

        return open_models_dialog(self)

    def offer_first_run(self) -> FirstRunDialog | None:
        """Called by the app's entry point once the window shows: no pack → offer ways to one."""
        from facebatch_gui.qt.first_run import FirstRunDialog, needs_first_run

        if not needs_first_run(self.settings.model_dir):
            return None
        dialog = FirstRunDialog(self)
        dialog.show()
        return dialog

    # -- drag and drop ------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _dropped_path(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        path = _dropped_path(event.mimeData())
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.load_path(path)

    # -- closing ------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        running = self.tasks.running_tasks()
        if running and not self._confirm(
            "Quit FaceBatch",
            f"{len(running)} batch{'es are' if len(running) > 1 else ' is'} running. Cancel and "
            "quit? Cancelled users can be resumed later from the task history.",
        ):
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop everything this window started; safe to call twice."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._history_timer.stop()
        self._stop_api()
        for task_id in self.tasks.running_tasks():
            self.tasks.cancel(task_id)
        self.tasks.wait_all(30_000)
        self.preview.shutdown()
        self.jobs.wait(30_000)
        # The workers are done; their last queued signals (a task's final results and `finished`)
        # are delivered now, while the store is still open, and nothing arrives after.
        QCoreApplication.sendPostedEvents()
        for signal in (
            self.tasks.taskStarted,
            self.tasks.taskProgressed,
            self.tasks.taskErrored,
            self.tasks.taskFinished,
        ):
            with contextlib.suppress(RuntimeError, TypeError):  # nothing left to disconnect
                signal.disconnect()
        self.save_settings()
        logging.getLogger().removeHandler(self.log_dock.handler)
        self.store.close()


_UNSET = object()


def _dropped_path(mime: Any) -> Path | None:
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.is_dir() or path.suffix.lower() in LIST_SUFFIXES:
                return path
    return None
