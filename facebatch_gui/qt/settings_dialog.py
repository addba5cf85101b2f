"""Settings dialog: edits a copy of `AppSettings`; pydantic decides what is valid."""

from __future__ import annotations

from pydantic import ValidationError
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from facebatch_gui.core.appsettings import AppSettings
from facebatch_gui.core.settings import MultiFacePolicy
from facebatch_gui.core.store.sqlite import default_db_path

DET_SIZES = (320, 480, 640, 800, 960)


def _spin(lo: int, hi: int, value: int, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    if suffix:
        box.setSuffix(suffix)
    return box


def _dspin(
    lo: float, hi: float, value: float, step: float = 0.05, decimals: int = 2
) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    return box


class PathEdit(QWidget):
    """A line edit with a Browse… button; empty means 'the default', shown as placeholder."""

    def __init__(self, value: str | None, placeholder: str, *, folder: bool) -> None:
        super().__init__()
        self.edit = QLineEdit(value or "")
        self.edit.setPlaceholderText(placeholder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(browse)
        self._folder = folder

    def _browse(self) -> None:
        if self._folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", self.edit.text())
        else:
            path, _ = QFileDialog.getSaveFileName(
                self, "Choose a database file", self.edit.text(), "SQLite (*.db);;All files (*)"
            )
        if path:
            self.edit.setText(path)

    def value(self) -> str | None:
        return self.edit.text().strip() or None


class SettingsDialog(QDialog):
    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(520)
        self._original = settings
        b, q, f = settings.batch, settings.batch.quality, settings.batch.fetch

        # -- detection and quality
        self.det_size = QComboBox()
        for size in DET_SIZES:
            self.det_size.addItem(f"{size} × {size}", size)
        self.det_size.setCurrentIndex(max(0, self.det_size.findData(q.det_size)))
        self.det_threshold = _dspin(0.05, 0.95, q.det_threshold)
        self.min_det_score = _dspin(0.0, 1.0, q.min_det_score)
        self.min_face_size = _spin(8, 2000, q.min_face_size, " px")
        self.min_blur = _dspin(0.0, 10_000.0, q.min_blur, step=5.0, decimals=1)
        self.duplicate_threshold = _dspin(0.0, 1.0, q.duplicate_threshold)
        self.multi_face = QComboBox()
        self.multi_face.addItem("Reject the photo", MultiFacePolicy.REJECT.value)
        self.multi_face.addItem("Use the largest face", MultiFacePolicy.LARGEST.value)
        self.multi_face.setCurrentIndex(max(0, self.multi_face.findData(q.multi_face.value)))
        quality = QFormLayout()
        quality.addRow("Detection size", self.det_size)
        quality.addRow("Detector threshold", self.det_threshold)
        quality.addRow("Minimum detection score", self.min_det_score)
        quality.addRow("Minimum face size", self.min_face_size)
        quality.addRow("Minimum sharpness (blur)", self.min_blur)
        quality.addRow("Duplicate similarity", self.duplicate_threshold)
        quality.addRow("Several faces in a photo", self.multi_face)

        # -- batch behaviour
        self.replace = QCheckBox("Replace faces that are already registered")
        self.replace.setChecked(b.replace)
        self.strict_replace = QCheckBox("…only when the new photo shows the same person")
        self.strict_replace.setChecked(b.strict_replace)
        self.strict_replace.setEnabled(b.replace)
        self.replace.toggled.connect(self.strict_replace.setEnabled)
        self.create_missing = QCheckBox("Create users that are not in the store yet")
        self.create_missing.setChecked(b.create_missing_users)
        self.fetch_workers = _spin(1, 64, b.fetch_workers)
        self.infer_workers = _spin(1, 16, b.infer_workers)
        self.connect_timeout = _dspin(0.5, 120.0, f.connect_timeout_s, step=1.0, decimals=1)
        self.read_timeout = _dspin(0.5, 600.0, f.read_timeout_s, step=1.0, decimals=1)
        batch = QFormLayout()
        batch.addRow(self.replace)
        batch.addRow(self.strict_replace)
        batch.addRow(self.create_missing)
        batch.addRow("Download workers", self.fetch_workers)
        batch.addRow("Detection workers", self.infer_workers)
        batch.addRow("Connect timeout (s)", self.connect_timeout)
        batch.addRow("Read timeout (s)", self.read_timeout)

        # -- models and store
        self.model_dir = PathEdit(settings.model_dir, "default pack (buffalo_l)", folder=True)
        self.db_path = PathEdit(settings.db_path, str(default_db_path()), folder=False)
        storage = QFormLayout()
        storage.addRow("Model pack folder", self.model_dir)
        storage.addRow("Embedded store (SQLite)", self.db_path)
        note = QLabel(
            "Changing the model folder or detection size reloads the models in the "
            "background; batches already running keep the models they started with."
        )
        note.setWordWrap(True)
        storage.addRow(note)

        tabs = QTabWidget()
        for title, form in (
            ("Detection && quality", quality),
            ("Batch", batch),
            ("Models && store", storage),
        ):
            page = QWidget()
            page.setLayout(form)
            tabs.addTab(page, title)
        self.error = QLabel()
        self.error.setStyleSheet("color: #c62828")
        self.error.setWordWrap(True)
        self.error.hide()
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        restore = buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        restore.clicked.connect(self._restore_defaults)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.tabs = tabs
        self._result: AppSettings | None = None

    def value(self) -> AppSettings:
        """The edited settings; raises ValidationError when a value is out of range."""
        data = self._original.model_dump(mode="json")
        batch = data["batch"]
        batch.update(
            replace=self.replace.isChecked(),
            strict_replace=self.strict_replace.isChecked() and self.replace.isChecked(),
            create_missing_users=self.create_missing.isChecked(),
            fetch_workers=self.fetch_workers.value(),
            infer_workers=self.infer_workers.value(),
        )
        batch["fetch"].update(
            connect_timeout_s=self.connect_timeout.value(), read_timeout_s=self.read_timeout.value()
        )
        batch["quality"].update(
            det_size=self.det_size.currentData(),
            det_threshold=self.det_threshold.value(),
            min_det_score=self.min_det_score.value(),
            min_face_size=self.min_face_size.value(),
            min_blur=self.min_blur.value(),
            duplicate_threshold=self.duplicate_threshold.value(),
            multi_face=self.multi_face.currentData(),
        )
        data["model_dir"] = self.model_dir.value()
        data["db_path"] = self.db_path.value()
        return AppSettings.model_validate(data)

    def accept(self) -> None:
        try:
            self._result = self.value()
        except ValidationError as exc:
            first = exc.errors()[0]
            self.error.setText(f"{'.'.join(map(str, first['loc']))}: {first['msg']}")
            self.error.show()
            return
        super().accept()

    def result_settings(self) -> AppSettings | None:
        return self._result

    def _restore_defaults(self) -> None:
        fresh = SettingsDialog(AppSettings(), self)
        for name in (
            "det_threshold",
            "min_det_score",
            "min_blur",
            "duplicate_threshold",
            "connect_timeout",
            "read_timeout",
        ):
            getattr(self, name).setValue(getattr(fresh, name).value())
        for name in ("min_face_size", "fetch_workers", "infer_workers"):
            getattr(self, name).setValue(getattr(fresh, name).value())
        for name in ("det_size", "multi_face"):
            getattr(self, name).setCurrentIndex(getattr(fresh, name).currentIndex())
        for name in ("replace", "strict_replace", "create_missing"):
            getattr(self, name).setChecked(getattr(fresh, name).isChecked())
        fresh.deleteLater()
