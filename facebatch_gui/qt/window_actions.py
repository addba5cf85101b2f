"""The window's actions, menus and toolbar: one place for names, icons, shortcuts and tips."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QToolBar

from facebatch_gui.qt.icons import action_icon

if TYPE_CHECKING:
    from facebatch_gui.qt.main_window import MainWindow


def _action(
    window: MainWindow,
    text: str,
    slot: Callable[[], object],
    *,
    icon: str | None = None,
    shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
    tip: str | None = None,
) -> QAction:
    action = QAction(text, window)
    if icon:
        action.setIcon(action_icon(icon))
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
        action.setToolTip(f"{tip} ({action.shortcut().toString()})" if shortcut else tip)
    action.triggered.connect(lambda _checked=False: slot())
    return action


def build_actions(window: MainWindow) -> None:
    """Every QAction, the menus and the toolbar; the slots stay on the window."""
    K = QKeySequence.StandardKey
    a = partial(_action, window)
    window.act_open = a(
        "&Open list…",
        window.open_list_dialog,
        icon="open",
        shortcut=K.Open,
        tip="Open a CSV or JSON user list",
    )
    window.act_open_folder = a(
        "Open &folder of photos…",
        window.open_folder_dialog,
        shortcut="Ctrl+Shift+O",
        tip="One user per photo; id = file name",
    )
    window.act_save = a(
        "&Save list as CSV…",
        window.save_list_dialog,
        icon="save",
        shortcut=K.Save,
        tip="Save the user list to CSV",
    )
    window.act_export_failures = a(
        "Export &failures…",
        window.export_failures_dialog,
        icon="export",
        shortcut="Ctrl+E",
        tip="Write the failure report CSV",
    )
    window.act_export_results = a(
        "Export &results…",
        window.export_results_dialog,
        shortcut="Ctrl+Shift+E",
        tip="Write every row to CSV",
    )
    window.act_quit = a("&Quit", window.close, shortcut=K.Quit)
    window.act_undo = window.undo_stack.createUndoAction(window, "&Undo")
    window.act_undo.setShortcut(QKeySequence(K.Undo))
    window.act_undo.setIcon(action_icon("undo"))
    window.act_redo = window.undo_stack.createRedoAction(window, "&Redo")
    window.act_redo.setShortcut(QKeySequence(K.Redo))
    window.act_redo.setIcon(action_icon("redo"))
    window.act_add = a(
        "&Add row", window.add_row, icon="add-row", shortcut="Ctrl+N", tip="Add a user"
    )
    window.act_remove = a(
        "Re&move rows",
        window.remove_selected_rows,
        icon="remove-row",
        shortcut=K.Delete,
        tip="Remove the selected rows from the list",
    )
    window.act_paste = a(
        "&Paste rows",
        window.paste_rows,
        icon="paste",
        shortcut=K.Paste,
        tip="Paste user_id and URL columns from a spreadsheet or CSV",
    )
    window.act_find = a("&Filter…", lambda: window.filter_edit.setFocus(), shortcut=K.Find)
    window.act_register = a(
        "&Register",
        window.register,
        icon="register",
        shortcut="Ctrl+R",
        tip="Enroll the faces of the selected rows (or all)",
    )
    window.act_delete = a(
        "&Delete faces",
        window.delete_faces,
        icon="delete",
        shortcut="Ctrl+Shift+Del",
        tip="Delete the stored faces of the selected rows (or all)",
    )
    window.act_cancel = a(
        "&Cancel",
        window.cancel_tasks,
        icon="cancel",
        shortcut="Ctrl+.",
        tip="Cancel the running batch",
    )
    window.act_retry = a(
        "Re&try failed",
        window.retry_failed,
        icon="retry",
        shortcut="F5",
        tip="Run the failed rows again as a new task",
    )
    window.act_settings = a(
        "&Settings…",
        window.open_settings,
        icon="settings",
        shortcut=K.Preferences,
        tip="Thresholds, workers, models, store",
    )
    if window.act_settings.shortcut().isEmpty():
        window.act_settings.setShortcut(QKeySequence("Ctrl+,"))
    window.act_about = a("&About FaceBatch", window.show_about)
    window.act_models = a(
        "&Model packs…", window.open_models_dialog, tip="Download, import, verify, choose packs"
    )
    for shortcut_action in (window.act_remove, window.act_paste):
        shortcut_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)

    menu = window.menuBar()
    _fill(
        menu.addMenu("&File"),
        [
            window.act_open,
            window.act_open_folder,
            window.act_save,
            None,
            window.act_export_failures,
            window.act_export_results,
            None,
            window.act_quit,
        ],
    )
    _fill(
        menu.addMenu("&Edit"),
        [
            window.act_undo,
            window.act_redo,
            None,
            window.act_add,
            window.act_remove,
            window.act_paste,
            None,
            window.act_find,
        ],
    )
    _fill(
        menu.addMenu("&Batch"),
        [
            window.act_register,
            window.act_delete,
            window.act_cancel,
            window.act_retry,
        ],
    )
    window.view_menu = menu.addMenu("&View")
    window.tools_menu = menu.addMenu("&Tools")
    _fill(window.tools_menu, [window.act_settings, window.act_models])
    window.help_menu = menu.addMenu("&Help")
    _fill(window.help_menu, [window.act_about])

    bar = QToolBar("Main")
    bar.setObjectName("mainToolbar")
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    _fill(
        bar,
        [
            window.act_open,
            window.act_save,
            None,
            window.act_add,
            window.act_remove,
            window.act_paste,
            window.act_undo,
            window.act_redo,
            None,
            window.act_register,
            window.act_delete,
            window.act_cancel,
            window.act_retry,
            None,
            window.act_export_failures,
            None,
            window.act_settings,
        ],
    )
    for quiet in (
        window.act_add,
        window.act_remove,
        window.act_paste,
        window.act_undo,
        window.act_redo,
        window.act_settings,
    ):
        quiet.setPriority(QAction.Priority.LowPriority)  # icon only beside text buttons
    window.addToolBar(bar)
    window.toolbar = bar


def _fill(target: QMenu | QToolBar, actions: Sequence[QAction | None]) -> None:
    for action in actions:
        if action is None:
            target.addSeparator()
        else:
            target.addAction(action)
