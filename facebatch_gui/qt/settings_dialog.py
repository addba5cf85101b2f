"""Settings dialog: edits a copy of `AppSettings`; pydantic decides what is valid."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, ValidationError
from PySide6.QtCore import Qt, QThreadPool, Signal
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

from facebatch_gui.core.apiconfig import ApiConfigError, check_exposure
from facebatch_gui.core.appsettings import AppSettings
from facebatch_gui.core.engine import PackIdentity
from facebatch_gui.core.settings import MultiFacePolicy
from facebatch_gui.core.store.config import (
    ConnectionReport,
    StoreConfig,
    StoreKind,
    check_connection,
)
from facebatch_gui.core.store.sqlite import default_db_path
from facebatch_gui.qt.workers import FunctionWorker

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


def _split_password(dsn: str) -> tuple[str, str]:
    """The DSN to show and its password apart, so the address stays readable on screen."""
    if not dsn:
        return "", ""
    import psycopg  # imported on use: it adds 0.14 s to the window's start-up
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return dsn, ""
    password = str(parts.pop("password", "") or "")
    if not password:
        return dsn, ""
    return make_conninfo("", **parts), password


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
    connectionTested = Signal(object)  # ConnectionReport
    _report = Signal(object)  # from the test worker's thread

    def __init__(
        self,
        settings: AppSettings,
        parent: QWidget | None = None,
        *,
        pack: PackIdentity | None = None,
    ) -> None:
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
        store = settings.store
        self.store_kind = QComboBox()
        for label, kind in (
            ("Embedded (SQLite on this computer)", StoreKind.SQLITE),
            ("PostgreSQL (or Supabase's direct connection)", StoreKind.POSTGRES),
            ("Supabase (REST API, service-role key)", StoreKind.SUPABASE),
        ):
            self.store_kind.addItem(label, kind.value)
        self.store_kind.setCurrentIndex(max(0, self.store_kind.findData(store.kind.value)))
        self.db_path = PathEdit(
            str(store.sqlite_path) if store.sqlite_path else None,
            str(default_db_path()),
            folder=False,
        )
        dsn_text, dsn_password = _split_password(store.dsn.get_secret_value() if store.dsn else "")
        self.dsn = QLineEdit(dsn_text)
        self.dsn.setPlaceholderText("postgresql://user@host:5432/db (default: FACEBATCH_DSN)")
        self.dsn_password = QLineEdit(dsn_password)
        self.dsn_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.dsn_password.setPlaceholderText("from PGPASSWORD or ~/.pgpass; typed here: not saved")
        self.supabase_url = QLineEdit(store.supabase_url or "")
        self.supabase_url.setPlaceholderText("https://PROJECT.supabase.co (default: SUPABASE_URL)")
        self.supabase_key = QLineEdit(
            store.supabase_key.get_secret_value() if store.supabase_key else ""
        )
        self.supabase_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.supabase_key.setPlaceholderText("from SUPABASE_SERVICE_KEY; typed here: not saved")
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        self.test_result = QLabel()
        self.test_result.setWordWrap(True)
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pack_identity = pack
        storage = QFormLayout()
        storage.addRow("Model pack folder", self.model_dir)
        storage.addRow("Face store", self.store_kind)
        storage.addRow("SQLite file", self.db_path)
        storage.addRow("PostgreSQL DSN", self.dsn)
        storage.addRow("PostgreSQL password", self.dsn_password)
        storage.addRow("Supabase URL", self.supabase_url)
        storage.addRow("Supabase service key", self.supabase_key)
        storage.addRow(self.test_button, self.test_result)
        self._store_rows = storage
        self.store_kind.currentIndexChanged.connect(self._store_kind_changed)
        self._store_kind_changed()
        note = QLabel(
            "Changing the model folder or detection size reloads the models in the "
            "background; batches already running keep the models they started with."
        )
        note.setWordWrap(True)
        storage.addRow(note)

        # -- HTTP endpoint
        api = settings.api
        self.api_enabled = QCheckBox("Run the HTTP endpoint while FaceBatch is open")
        self.api_enabled.setChecked(api.enabled)
        self.api_host = QLineEdit(api.host)
        self.api_port = _spin(0, 65535, api.port)
        self.api_token = QLineEdit(api.token or "")
        self.api_token.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.api_token.setPlaceholderText("none (only allowed on 127.0.0.1)")
        self.api_private = QCheckBox("Allow avatar URLs on private and loopback networks")
        self.api_private.setChecked(api.allow_private_urls)
        self.api_max_users = _spin(1, 1_000_000, api.max_users_per_batch)
        self.api_max_tasks = _spin(1, 64, api.max_concurrent_tasks)
        http = QFormLayout()
        http.addRow(self.api_enabled)
        http.addRow("Listen on address", self.api_host)
        http.addRow("Port", self.api_port)
        http.addRow("Bearer token", self.api_token)
        http.addRow(self.api_private)
        http.addRow("Users per batch, at most", self.api_max_users)
        http.addRow("Running tasks, at most", self.api_max_tasks)
        api_note = QLabel(
            "Other programs start batches with POST /faces/batch-register and /faces/batch-delete "
            "and follow them with GET /faces/task-status/{task_id}. Listening on an address other "
            "than 127.0.0.1 needs a token."
        )
        api_note.setWordWrap(True)
        http.addRow(api_note)

        tabs = QTabWidget()
        for title, form in (
            ("Detection && quality", quality),
            ("Batch", batch),
            ("Models && store", storage),
            ("HTTP API", http),
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
        self._workers: list[FunctionWorker] = []
        self.last_report: ConnectionReport | None = None
        self._report.connect(self._show_report, Qt.ConnectionType.QueuedConnection)

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
        data["api"].update(
            enabled=self.api_enabled.isChecked(),
            host=self.api_host.text().strip() or "127.0.0.1",
            port=self.api_port.value(),
            token=self.api_token.text().strip() or None,
            allow_private_urls=self.api_private.isChecked(),
            max_users_per_batch=self.api_max_users.value(),
            max_concurrent_tasks=self.api_max_tasks.value(),
        )
        data["model_dir"] = self.model_dir.value()
        data["store"] = self.store_config().model_dump(mode="json")
        result = AppSettings.model_validate(data)
        # Secrets are not in the JSON form; carry them over for this session.
        result.store = self.store_config()
        return result

    def store_config(self) -> StoreConfig:
        dsn = self.dsn.text().strip()
        password = self.dsn_password.text()
        if dsn and password:
            from psycopg.conninfo import make_conninfo

            dsn = make_conninfo(dsn, password=password)
        key = self.supabase_key.text().strip()
        sqlite_path = self.db_path.value()
        return self._original.store.model_copy(
            update={
                "kind": StoreKind(self.store_kind.currentData()),
                "sqlite_path": Path(sqlite_path) if sqlite_path else None,
                "dsn": SecretStr(dsn) if dsn else None,
                "supabase_url": self.supabase_url.text().strip() or None,
                "supabase_key": SecretStr(key) if key else None,
            }
        )

    def _store_kind_changed(self) -> None:
        kind = StoreKind(self.store_kind.currentData())
        shown = {
            self.db_path: kind == StoreKind.SQLITE,
            self.dsn: kind == StoreKind.POSTGRES,
            self.dsn_password: kind == StoreKind.POSTGRES,
            self.supabase_url: kind == StoreKind.SUPABASE,
            self.supabase_key: kind == StoreKind.SUPABASE,
        }
        for widget, visible in shown.items():
            self._store_rows.setRowVisible(widget, visible)
        self.test_result.clear()

    def test_connection(self) -> None:
        """Runs off the GUI thread: an unreachable host can take the whole connect timeout."""
        config = self.store_config()
        pack = self.pack_identity
        self.test_button.setEnabled(False)
        self.test_result.setStyleSheet("")
        self.test_result.setText(f"Connecting to {config.describe()}…")
        worker = FunctionWorker(lambda: self._report.emit(check_connection(config, pack)))
        self._workers.append(worker)
        QThreadPool.globalInstance().start(worker)

    def _show_report(self, report: ConnectionReport) -> None:
        self.test_button.setEnabled(True)
        colour = "#2e7d32" if report.ok else "#c62828"
        self.test_result.setStyleSheet(f"color: {colour}")
        self.test_result.setText(report.message)
        self.last_report = report
        self.connectionTested.emit(report)

    def accept(self) -> None:
        try:
            result = self.value()
            if result.api.enabled:
                check_exposure(result.api)
        except ValidationError as exc:
            first = exc.errors()[0]
            self.error.setText(f"{'.'.join(map(str, first['loc']))}: {first['msg']}")
            self.error.show()
            return
        except ApiConfigError as exc:
            self.error.setText(str(exc))
            self.error.show()
            return
        self._result = result
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
