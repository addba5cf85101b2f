"""First run: no model pack is available, so say so once and offer the ways to get one.

Shown by the app's entry point after the window is up (`offer_first_run`), never by the window's
constructor, so tests and scripted starts stay deterministic. It is not modal: the operator can
dismiss it ("Later") and keep loading and editing user lists.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from facebatch_gui.core.engine import DEFAULT_PACK, MODEL_DIR_ENV
from facebatch_gui.core.packs import CATALOG, PackManager, available_model_dir
from facebatch_gui.qt.icons import app_icon
from facebatch_gui.qt.models_dialog import human_size, licence_html, open_models_dialog

if TYPE_CHECKING:
    from facebatch_gui.qt.main_window import MainWindow


def needs_first_run(model_dir: str | None) -> bool:
    """True when nothing would load: no folder in the settings, no valid FACEBATCH_MODEL_DIR and
    no default pack installed. A configured folder that is broken is the banner's business."""
    if model_dir:
        return False
    env = os.environ.get(MODEL_DIR_ENV)
    found = available_model_dir(env) if env else None
    if found is not None and any(found.glob("*.onnx")):
        return False
    return available_model_dir(None) is None


class FirstRunDialog(QDialog):
    """Four ways on: download the default pack, choose a folder, import a zip, or later."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window_ = window
        self.setWindowTitle("Welcome to FaceBatch")
        self.setWindowIcon(app_icon())
        self.setModal(False)
        info = CATALOG[DEFAULT_PACK]
        manager = PackManager()
        others = [p.name for p in manager.list_installed()]
        text = (
            "<h3>FaceBatch needs a face model pack</h3>"
            "<p>To register faces, FaceBatch needs an InsightFace model pack: a folder of "
            ".onnx files with a face detector and a face recogniser. None was found on this "
            "computer.</p>"
            f"<p>You can download the recommended pack, <b>{DEFAULT_PACK}</b> "
            f"({human_size(info.size)}), or use a pack copied from another computer (a folder "
            "or a zip). Until then you can still open, edit and save user lists.</p>"
        )
        if others:
            text += (
                f"<p>Installed but not chosen yet: {', '.join(others)} — open "
                "<b>Tools → Model packs…</b> to use one.</p>"
            )
        label = QLabel(text)
        label.setWordWrap(True)
        notice = QLabel(f"<small>{licence_html()}</small>")
        notice.setWordWrap(True)
        notice.setOpenExternalLinks(True)
        notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)

        self.download_button = QPushButton(f"Download {DEFAULT_PACK} ({human_size(info.size)})")
        self.download_button.setDefault(True)
        self.download_button.clicked.connect(self.download_default)
        self.folder_button = QPushButton("Choose a folder…")
        self.folder_button.clicked.connect(self.choose_folder)
        self.zip_button = QPushButton("Import a zip…")
        self.zip_button.clicked.connect(self.import_zip)
        self.later_button = QPushButton("Later")
        self.later_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.folder_button)
        buttons.addWidget(self.zip_button)
        buttons.addStretch(1)
        buttons.addWidget(self.later_button)

        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addWidget(notice)
        layout.addLayout(buttons)
        self.setMinimumWidth(620)

    def download_default(self) -> None:
        """Open the Models dialog and start the download there (progress, cancel, errors)."""
        self.accept()
        open_models_dialog(self.window_, download=DEFAULT_PACK, use_when_done=True)

    def choose_folder(self) -> None:
        self.accept()
        self.window_.choose_model_folder()

    def import_zip(self) -> None:
        self.accept()
        dialog = open_models_dialog(self.window_)
        dialog.import_zip(use_when_done=True)
