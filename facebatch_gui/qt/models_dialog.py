"""The Models dialog: list, download, import, verify, remove and choose face model packs.

Every operation runs through `PackJob` (a worker thread), so the dialog never blocks and can stay
open beside the main window while a 300 MB pack arrives. Errors are shown inline in the dialog in
the operator's words (the core's messages already say what to do, e.g. how to import offline);
only removal asks a question, because it deletes files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from facebatch_gui.core.packs import (
    LICENCE_NOTICE,
    DownloadProgress,
    PackEntry,
    PackManager,
    VerifyReport,
    available_model_dir,
)
from facebatch_gui.qt.packjob import PackJob

if TYPE_CHECKING:
    from facebatch_gui.qt.main_window import MainWindow

STALL_AFTER_S = 5.0
STAGE_WORDS = {
    "downloading": "downloading",
    "verifying": "verifying checksum",
    "extracting": "extracting",
    "checking": "checking the models load",
    "done": "done",
}


def human_size(n: int | None) -> str:
    """Decimal MB/GB, as the CLI prints them (`facebatch models list`)."""
    if n is None:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:,.2f} GB"
    if n >= 1e5:
        return f"{n / 1e6:,.1f} MB"
    return f"{n / 1e3:,.0f} kB"


def format_eta(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(p: DownloadProgress) -> str:
    """'123.4 MB of 288.6 MB · 5.2 MB/s · ETA 0:42 · downloading' (parts unknown are left out)."""
    stage = STAGE_WORDS.get(p.stage, p.stage)
    if p.stage == "checking":
        return "Checking that every model loads · checking"
    if p.stage == "done":
        return "Installed · done"
    parts = [
        f"{human_size(p.bytes_done)} of {human_size(p.total)}"
        if p.total
        else human_size(p.bytes_done)
    ]
    if p.stage == "downloading" or p.rate_bps > 0:
        parts.append(f"{human_size(int(p.rate_bps))}/s")
    if p.eta_s is not None:
        parts.append(f"ETA {format_eta(p.eta_s)}")
    parts.append(stage)
    return " · ".join(parts)


LICENCE_URL = "https://github.com/deepinsight/insightface#license"


def licence_html() -> str:
    """LICENCE_NOTICE with its address as a short link (a bare URL wraps badly in a label)."""
    link = f'<a href="{LICENCE_URL}">{LICENCE_URL.removeprefix("https://")}</a>'
    return LICENCE_NOTICE.replace(LICENCE_URL, link)


def _same_dir(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


class PackTableModel(QAbstractTableModel):
    """The rows of `PackManager.entries()`; `refresh()` re-reads the disk."""

    COLUMNS = ("Pack", "Description", "Size", "Status", "SHA-256")
    NAME, DESCRIPTION, SIZE, STATUS, SHA = range(5)

    def __init__(self, manager: PackManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.manager = manager
        self.entries: list[PackEntry] = []
        self.in_use: Path | None = None
        self.busy: dict[str, str] = {}  # name -> "downloading 42%" while a job runs
        self.refresh()

    def refresh(self) -> None:
        self.beginResetModel()
        self.entries = self.manager.entries()
        self.endResetModel()

    def set_busy(self, name: str, text: str | None) -> None:
        if text is None:
            self.busy.pop(name, None)
        else:
            self.busy[name] = text
        row = self.row_of(name)
        if row is not None:
            idx = self.index(row, self.STATUS)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DisplayRole])

    def row_of(self, name: str) -> int | None:
        return next((i for i, e in enumerate(self.entries) if e.name == name), None)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def is_in_use(self, entry: PackEntry) -> bool:
        return entry.installed is not None and _same_dir(entry.installed.path, self.in_use)

    def status(self, entry: PackEntry) -> str:
        if entry.name in self.busy:
            return self.busy[entry.name]
        if entry.installed is not None:
            return "in use" if self.is_in_use(entry) else "installed"
        if entry.partial_bytes:
            total = entry.info.size if entry.info is not None else None
            of = f" of {human_size(total)}" if total else ""
            return f"partial download {human_size(entry.partial_bytes)}{of}"
        return "not installed"

    def size(self, entry: PackEntry) -> int | None:
        if entry.info is not None and entry.info.size is not None:
            return entry.info.size
        return entry.installed.size if entry.installed is not None else None

    @staticmethod
    def sha(entry: PackEntry) -> str | None:
        if entry.info is not None and entry.info.sha256:
            return entry.info.sha256
        manifest = entry.installed.manifest if entry.installed is not None else None
        value = manifest.get("archive_sha256") if manifest else None
        return value if isinstance(value, str) else None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid():
            return None
        entry = self.entries[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.NAME:
                return entry.name
            if col == self.DESCRIPTION:
                if entry.info is not None:
                    return entry.info.description
                source = entry.installed.source if entry.installed is not None else None
                return f"Imported from {source}" if source else "Installed by hand"
            if col == self.SIZE:
                return human_size(self.size(entry))
            if col == self.STATUS:
                return self.status(entry)
            if col == self.SHA:
                sha = self.sha(entry)
                return sha[:12] if sha else "—"
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.SHA:
                return self.sha(entry) or "no checksum known"
            if col == self.DESCRIPTION and entry.info is not None:
                return entry.info.description
            if entry.installed is not None:
                return str(entry.installed.path)
        if role == Qt.ItemDataRole.FontRole and col == self.SHA:
            return QFont("monospace")
        if role == Qt.ItemDataRole.FontRole and col in (self.NAME, self.STATUS):
            font = QFont()
            font.setBold(col == self.NAME or self.is_in_use(entry))
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and col == self.SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


@dataclass
class _Running:
    kind: str  # "download", "import", "verify"
    name: str
    use_when_done: bool
    last_event: float
    stage: str = ""


class ModelsDialog(QDialog):
    """Known and installed packs with every pack action; emits `packChosen(folder)` on "Use".

    Closing only hides it: a running download goes on and the menu shows the same dialog again.
    """

    packChosen = Signal(str)
    packRemoved = Signal(str)  # the removed folder, so a window using it can reload

    def __init__(
        self,
        manager: PackManager,
        current_model_dir: str | None = None,
        parent: QWidget | None = None,
        *,
        url_overrides: dict[str, str] | None = None,
        sha256_overrides: dict[str, str] | None = None,
        size_overrides: dict[str, int] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model packs — FaceBatch")
        self.setModal(False)
        self.manager = manager
        # Tests (and mirrors) download from another address; sha256/size check that file.
        self.url_overrides = dict(url_overrides or {})
        self.sha256_overrides = dict(sha256_overrides or {})
        self.size_overrides = dict(size_overrides or {})
        self.job: PackJob | None = None
        self.running: _Running | None = None
        self.last_progress: DownloadProgress | None = None
        self.stall_after_s = STALL_AFTER_S

        self.model = PackTableModel(manager, self)
        self._build()
        self.set_current_model_dir(current_model_dir)
        self._stall_timer = QTimer(self)
        self._stall_timer.setInterval(1000)
        self._stall_timer.timeout.connect(self._show_stall)
        self.resize(1000, 540)

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        intro = QLabel(
            "A model pack holds the face detector and recogniser FaceBatch uses. Download a known "
            "pack, or import one copied from another computer (a zip or a folder).<br>"
            f"Packs are kept in <code>{self.manager.root}</code>"
        )
        intro.setWordWrap(True)
        intro.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.table.setAlternatingRowColors(True)
        # Air between rows without item padding (padding breaks the wrapped rows' heights).
        self.table.verticalHeader().setMinimumSectionSize(self.fontMetrics().height() * 2 + 6)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(PackTableModel.DESCRIPTION, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # Row heights follow the wrapped description when the stretched column changes width.
        header.sectionResized.connect(lambda *_: self.table.resizeRowsToContents())
        self.table.selectionModel().currentRowChanged.connect(lambda *_: self._update_buttons())
        self.table.doubleClicked.connect(lambda *_: self._double_clicked())
        self.model.modelReset.connect(self._update_buttons)

        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(lambda: self.download())
        self.import_zip_button = QPushButton("Import zip…")
        self.import_zip_button.clicked.connect(lambda: self.import_zip())
        self.import_folder_button = QPushButton("Import folder…")
        self.import_folder_button.clicked.connect(lambda: self.import_folder())
        self.verify_button = QPushButton("Verify")
        self.verify_button.clicked.connect(lambda: self.verify())
        self.remove_button = QPushButton("Remove…")
        self.remove_button.clicked.connect(lambda: self.remove())
        self.use_button = QPushButton("Use this pack")
        self.use_button.setDefault(True)
        self.use_button.clicked.connect(lambda: self.use_selected())
        actions = QHBoxLayout()
        for button in (
            self.download_button,
            self.import_zip_button,
            self.import_folder_button,
            self.verify_button,
            self.remove_button,
        ):
            actions.addWidget(button)
        actions.addStretch(1)
        actions.addWidget(self.use_button)

        self.progress_label = QLabel()
        self.progress_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.clicked.connect(self.cancel)
        bar_row = QHBoxLayout()
        bar_row.addWidget(self.progress_bar, 1)
        bar_row.addWidget(self.cancel_button)
        progress_box = QVBoxLayout()
        progress_box.setContentsMargins(0, 0, 0, 0)
        progress_box.addWidget(self.progress_label)
        progress_box.addLayout(bar_row)
        self.progress_area = QWidget()
        self.progress_area.setLayout(progress_box)
        self.progress_area.hide()

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.RichText)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()

        self.licence_label = QLabel(f"<b>Licence of the model weights.</b> {licence_html()}")
        self.licence_label.setWordWrap(True)
        self.licence_label.setOpenExternalLinks(True)
        self.licence_label.setFrameShape(QFrame.Shape.StyledPanel)
        self.licence_label.setStyleSheet(
            "QLabel { background: palette(alternate-base); padding: 6px; }"
        )

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.close_button = buttons.button(QDialogButtonBox.StandardButton.Close)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addLayout(actions)
        layout.addWidget(self.progress_area)
        layout.addWidget(self.message)
        layout.addWidget(self.licence_label)
        layout.addWidget(buttons)
        self._update_buttons()

    # -- selection and state ------------------------------------------------------------------
    def set_current_model_dir(self, model_dir: str | None) -> None:
        """The window's setting; the pack "in use" is what the engine would load from it."""
        self.current_model_dir = model_dir
        self.model.in_use = available_model_dir(model_dir)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_name()
        self.model.refresh()
        if selected is not None:
            self.select(selected)
        elif self.model.entries:
            self.select(self.model.entries[0].name)

    def select(self, name: str) -> bool:
        row = self.model.row_of(name)
        if row is None:
            return False
        self.table.selectionModel().setCurrentIndex(
            self.model.index(row, 0),
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows,
        )
        return True

    def selected_entry(self) -> PackEntry | None:
        index = self.table.selectionModel().currentIndex()
        if not index.isValid() or index.row() >= len(self.model.entries):
            return None
        return self.model.entries[index.row()]

    def selected_name(self) -> str | None:
        entry = self.selected_entry()
        return entry.name if entry is not None else None

    def status_of(self, name: str) -> str:
        row = self.model.row_of(name)
        return "" if row is None else self.model.status(self.model.entries[row])

    def _update_buttons(self) -> None:
        entry = self.selected_entry()
        busy = self.running is not None
        installed = entry is not None and entry.installed is not None
        can_download = entry is not None and (
            entry.info is not None or entry.name in self.url_overrides
        )
        self.download_button.setEnabled(not busy and can_download and not installed)
        self.download_button.setText(
            "Resume download" if entry is not None and entry.partial_bytes else "Download"
        )
        self.import_zip_button.setEnabled(not busy)
        self.import_folder_button.setEnabled(not busy)
        self.verify_button.setEnabled(not busy and installed)
        self.remove_button.setEnabled(
            not busy and entry is not None and (installed or entry.partial_bytes > 0)
        )
        self.use_button.setEnabled(installed)

    def _double_clicked(self) -> None:
        entry = self.selected_entry()
        if entry is not None and entry.installed is not None:
            self.use_selected()
        elif self.download_button.isEnabled():
            self.download()

    def _say(self, text: str, kind: str = "info") -> None:
        colours = {
            "info": ("#e8f5e9", "#1b5e20", "#a5d6a7"),
            "error": ("#fdecea", "#8b1a10", "#f5b7b1"),
            "note": ("#e3f2fd", "#0d47a1", "#90caf9"),
        }
        bg, fg, border = colours[kind]
        self.message.setStyleSheet(
            f"QLabel {{ background: {bg}; color: {fg}; border: 1px solid {border};"
            " border-radius: 4px; padding: 6px; }"
        )
        self.message.setText(text)
        self.message.setProperty("kind", kind)
        self.message.show()

    # -- actions ------------------------------------------------------------------------------
    def download(self, name: str | None = None, *, use_when_done: bool = False) -> bool:
        """Start downloading NAME (default: the selected pack); False if that cannot start."""
        name = name or self.selected_name()
        if name is None or self.running is not None:
            return False
        self.select(name)
        options: dict[str, Any] = {}
        if name in self.url_overrides:
            options["url"] = self.url_overrides[name]
            if name in self.sha256_overrides:
                options["sha256"] = self.sha256_overrides[name]
            if name in self.size_overrides:
                options["size"] = self.size_overrides[name]
        job = self._new_job("download", name, use_when_done)
        row = self.model.row_of(name)
        total = self.size_overrides.get(name)
        if total is None and row is not None and self.model.entries[row].info is not None:
            total = self.model.entries[row].info.size  # type: ignore[union-attr]
        self.progress_label.setText(f"{name}: connecting… ({human_size(total)} to download)")
        job.download(name, **options)
        return True

    def import_zip(
        self,
        path: str | Path | None = None,
        name: str | None = None,
        *,
        use_when_done: bool = False,
    ) -> bool:
        """Install a pack zip; without PATH, ask for it (and for the pack's name)."""
        if path is None:
            chosen, _ = QFileDialog.getOpenFileName(
                self, "Import a model pack zip", "", "Zip archives (*.zip);;All files (*)"
            )
            if not chosen:
                return False
            path = chosen
            name = self._ask_name(Path(chosen).stem)
            if name is None:
                return False
        return self._import(Path(path), name, use_when_done)

    def import_folder(
        self,
        path: str | Path | None = None,
        name: str | None = None,
        *,
        use_when_done: bool = False,
    ) -> bool:
        """Install a folder of .onnx files (a copy is made); without PATH, ask for it."""
        if path is None:
            chosen = QFileDialog.getExistingDirectory(self, "Import a model pack folder")
            if not chosen:
                return False
            path = chosen
            name = self._ask_name(Path(chosen).name)
            if name is None:
                return False
        return self._import(Path(path), name, use_when_done)

    def _ask_name(self, default: str) -> str | None:
        text, ok = QInputDialog.getText(
            self,
            "Pack name",
            "Install the pack under this name (letters, digits, '.', '_' or '-'):",
            text="".join(c if c.isalnum() or c in "._-" else "_" for c in default).lstrip("._"),
        )
        return text.strip() if ok and text.strip() else None

    def _import(self, path: Path, name: str | None, use_when_done: bool) -> bool:
        if self.running is not None:
            return False
        label = name or (path.stem if path.is_file() else path.name)
        job = self._new_job("import", label, use_when_done)
        self.progress_label.setText(f"{label}: importing {path}…")
        job.import_pack(path, name)
        return True

    def verify(self, name: str | None = None) -> bool:
        name = name or self.selected_name()
        if name is None or self.running is not None:
            return False
        job = self._new_job("verify", name, False)
        self.cancel_button.hide()  # verify reads a few MB and loads models: seconds, no cancel
        self.progress_bar.setRange(0, 0)
        self.progress_label.setText(f"{name}: re-hashing the files and loading every model…")
        job.verify(name)
        return True

    def remove(self, name: str | None = None) -> bool:
        """Delete a pack (or only its partial download) after the operator confirms."""
        entry = self.selected_entry() if name is None else None
        if name is not None:
            row = self.model.row_of(name)
            entry = self.model.entries[row] if row is not None else None
        if entry is None or self.running is not None:
            return False
        if entry.installed is not None:
            text = (
                f"Delete model pack {entry.name} ({human_size(entry.installed.size)}) from "
                f"{entry.installed.path}?"
            )
            if self.model.is_in_use(entry):
                text += (
                    "\n\nFaceBatch uses this pack now: after removing it, no faces can be "
                    "registered until you choose another pack."
                )
        elif entry.partial_bytes:
            text = (
                f"Discard the partial download of {entry.name} ({human_size(entry.partial_bytes)})?"
            )
        else:
            return False
        answer = QMessageBox.question(
            self,
            "Remove model pack",
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return False
        path = entry.installed.path if entry.installed is not None else None
        try:
            self.manager.remove(entry.name)
        except Exception as exc:  # noqa: BLE001 - shown to the operator, never a crash
            self._say(f"Could not remove {entry.name}: {exc}", "error")
            return False
        self.refresh()
        if path is not None:
            self._say(f"Removed {entry.name}.", "note")
            self.packRemoved.emit(str(path))
        else:
            self._say(f"Discarded the partial download of {entry.name}.", "note")
        return True

    def use_selected(self) -> bool:
        entry = self.selected_entry()
        if entry is None or entry.installed is None:
            return False
        self._use(entry.name, entry.installed.path)
        return True

    def _use(self, name: str, path: Path) -> None:
        self.current_model_dir = str(path)
        self.model.in_use = path
        self.refresh()
        self._say(f"FaceBatch now uses {name} ({path}); the models are loading.", "info")
        self.packChosen.emit(str(path))

    def cancel(self) -> None:
        if self.job is not None and self.running is not None:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.progress_label.setText(self.progress_label.text() + " · cancelling…")

    # -- the running job ----------------------------------------------------------------------
    def _new_job(self, kind: str, name: str, use_when_done: bool) -> PackJob:
        if self.job is not None:  # the previous one has finished: its thread is ending
            self.job.wait(1.0)
            self.job.deleteLater()
        job = PackJob(self.manager, self)
        job.progressed.connect(self._on_progress)
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        job.finished.connect(self._on_finished)
        self.job = job
        self.running = _Running(kind, name, use_when_done, time.monotonic())
        self.last_progress = None
        self.message.hide()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("%p%")
        self.cancel_button.setText("Cancel download" if kind == "download" else "Cancel import")
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.progress_area.show()
        self.model.set_busy(
            name, {"download": "downloading…", "import": "importing…"}.get(kind, "verifying…")
        )
        self._stall_timer.start()
        self._update_buttons()
        return job

    def _on_progress(self, p: DownloadProgress) -> None:
        run = self.running
        if run is None:
            return
        run.last_event = time.monotonic()
        run.stage = p.stage
        self.last_progress = p
        fraction = p.fraction
        if p.stage in ("verifying", "checking") or fraction is None:
            self.progress_bar.setRange(0, 0)  # busy: no byte counts arrive in these stages
        else:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(min(fraction, 1.0) * 1000))
        self.progress_label.setText(f"<b>{run.name}</b>: {progress_text(p)}")
        pct = f" {fraction:.0%}" if fraction is not None and p.stage != "checking" else ""
        self.model.set_busy(run.name, f"{STAGE_WORDS.get(p.stage, p.stage)}{pct}")

    def _show_stall(self) -> None:
        run, p = self.running, self.last_progress
        if run is None or run.stage not in ("", "downloading") or run.kind != "download":
            return
        idle = time.monotonic() - run.last_event
        if idle < self.stall_after_s:
            return
        base = f"<b>{run.name}</b>: {progress_text(p) if p is not None else 'connecting…'}"
        self.progress_label.setText(
            f"{base} · stalled for {int(idle)} s (the connection may be down; it is retried, "
            "or cancel and import the pack instead)"
        )

    def _on_succeeded(self, result: object) -> None:
        run = self.running
        if run is None:
            return
        self.refresh()
        if isinstance(result, VerifyReport):
            if result.ok:
                notes = "".join(f"<br>• {n}" for n in result.notes)
                tasks = ", ".join(f"{t}: {f}" for t, f in sorted(result.routed.items()))
                self._say(
                    f"<b>{run.name}: OK.</b> {len(result.files)} files match"
                    f"{'; models load (' + tasks + ')' if tasks else ''}.{notes}",
                    "info",
                )
            else:
                problems = "".join(f"<br>• {p}" for p in result.problems)
                self._say(
                    f"<b>{run.name} has problems:</b>{problems}<br>Remove it and download or "
                    "import it again.",
                    "error",
                )
            return
        path = Path(str(result))
        self.select(path.name)
        verb = "Downloaded" if run.kind == "download" else "Imported"
        if run.use_when_done:
            self._say(f"{verb} and installed {path.name} in {path}.", "info")
            self._use(path.name, path)
        else:
            self._say(
                f"{verb} and installed {path.name} in {path}. Press “Use this pack” to "
                "register faces with it.",
                "info",
            )

    def _on_failed(self, message: str) -> None:
        run = self.running
        name = run.name if run is not None else "the pack"
        what = "Import" if run is not None and run.kind == "import" else "Download"
        text = f"<b>{what} of {name} failed.</b> {_escape(message)}"
        if run is not None and run.kind == "download" and "import" not in message.lower():
            text += (
                "<br>Without internet: copy the pack's zip or folder from another machine and "
                "use <b>Import zip…</b> or <b>Import folder…</b>."
            )
        if run is not None and run.kind == "verify":
            text = f"<b>Cannot verify {name}.</b> {_escape(message)}"
        self._say(text, "error")
        self.refresh()

    def _on_cancelled(self, message: str) -> None:
        self._say(f"Cancelled. {_escape(message)}", "note")
        self.refresh()

    def _on_finished(self) -> None:
        run = self.running
        self.running = None
        self._stall_timer.stop()
        if run is not None:
            self.model.set_busy(run.name, None)
        self.progress_area.hide()
        self.progress_bar.setRange(0, 1000)
        self._update_buttons()

    # -- closing ------------------------------------------------------------------------------
    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel a running job and wait for its thread (the app is quitting)."""
        if self.job is not None:
            self.job.cancel()
            self.job.wait(timeout_s)


def open_models_dialog(
    window: MainWindow, *, download: str | None = None, use_when_done: bool = False
) -> ModelsDialog:
    """Show the window's one Models dialog (made on first use) wired to its settings: a chosen
    pack becomes `settings.model_dir`, and removing the pack in use reloads (and so explains)."""
    dialog = window.findChild(ModelsDialog)
    if dialog is None:
        dialog = ModelsDialog(PackManager(), window.settings.model_dir, window)

        def chosen(path: str) -> None:
            window.apply_settings(window.settings.model_copy(update={"model_dir": path}))

        def removed(path: str) -> None:
            if _same_dir(Path(path), available_model_dir(window.settings.model_dir)) or (
                window.settings.model_dir and _same_dir(Path(path), Path(window.settings.model_dir))
            ):
                window.reload_models()

        dialog.packChosen.connect(chosen)
        dialog.packRemoved.connect(removed)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(dialog.shutdown)
    else:
        dialog.set_current_model_dir(window.settings.model_dir)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    if download is not None:
        dialog.download(download, use_when_done=use_when_done)
    return dialog


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
