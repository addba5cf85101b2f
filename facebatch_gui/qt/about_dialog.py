"""Help → About: what this build is made of (versions an operator can quote in a support request)
and under which licences, including the non-commercial terms of InsightFace's model weights."""

from __future__ import annotations

import platform

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from facebatch_gui import __version__
from facebatch_gui.core.selfcheck import versions
from facebatch_gui.qt.icons import app_icon
from facebatch_gui.qt.models_dialog import licence_html

LICENCES = (
    ("InsightFace (code)", "MIT", "https://github.com/deepinsight/insightface"),
    ("Qt and PySide6", "LGPLv3", "https://doc.qt.io/qtforpython-6/licenses.html"),
    ("ONNX Runtime", "MIT", "https://github.com/microsoft/onnxruntime"),
    ("OpenCV", "Apache 2.0", "https://opencv.org/license/"),
    ("NumPy", "BSD 3-Clause", "https://numpy.org/license"),
)


def version_rows() -> list[tuple[str, str]]:
    """(component, version) in the order an operator reads them."""
    found = versions()
    rows = [
        ("FaceBatch", __version__),
        ("Python", platform.python_version()),
        ("PySide6 / Qt", f"{pyside_version} / Qt {qVersion()}"),
        ("ONNX Runtime", found.get("onnxruntime", "not installed")),
        ("OpenCV", found.get("opencv-python", "not installed")),
        ("NumPy", found.get("numpy", "not installed")),
        ("InsightFace", found.get("insightface", "not installed")),
    ]
    if found.get("frozen") == "True":
        rows.append(("Build", "bundled application"))
    return rows


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About FaceBatch")
        self.rows = version_rows()

        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(96, 96))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        title = QLabel(
            f"<h2 style='margin:0'>FaceBatch {__version__}</h2>"
            "<p>Register or delete the faces of many users at once.<br>"
            "Face detection and recognition by InsightFace on ONNX Runtime.</p>"
        )
        title.setWordWrap(True)
        head = QHBoxLayout()
        head.addWidget(icon)
        head.addWidget(title, 1)

        table = "".join(
            f"<tr><td style='padding-right:16px'>{name}</td><td><b>{version}</b></td></tr>"
            for name, version in self.rows
        )
        self.versions_label = QLabel(f"<b>Versions</b><table>{table}</table>")
        self.versions_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        licences = "".join(
            f"<li>{name}: {licence} (<a href='{url}'>{url.split('//')[1]}</a>)</li>"
            for name, licence, url in LICENCES
        )
        self.licence_label = QLabel(
            "<b>Licences</b><ul style='margin-left:-20px'>"
            f"<li>FaceBatch: MIT</li>{licences}</ul>"
            f"<p><b>InsightFace model weights:</b> {licence_html()}</p>"
        )
        self.licence_label.setWordWrap(True)
        self.licence_label.setOpenExternalLinks(True)
        self.licence_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        copy = QPushButton("Copy versions")
        copy.setToolTip("Copy the versions as text, e.g. for a support request")
        copy.clicked.connect(self.copy_versions)
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)

        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.versions_label)
        layout.addWidget(self.licence_label)
        layout.addWidget(buttons)
        self.setMinimumWidth(560)

    def versions_text(self) -> str:
        return "\n".join(f"{name}: {version}" for name, version in self.rows)

    def copy_versions(self) -> None:
        clipboard = QApplication.clipboard()
        if clipboard is not None:
            clipboard.setText(self.versions_text())
