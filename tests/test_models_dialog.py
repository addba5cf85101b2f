"""The Models, first-run and About dialogs, driven with qtbot.

Real things throughout: a real PackManager in tmp_path (INSIGHTFACE_HOME points there), a zip of
../shared/models made at test time and served by the loopback PackServer (Range, slowing), the
real main window loading the real engine from the pack the dialog installed. File pickers are
bypassed by passing paths to `import_zip`/`import_folder` (a native file dialog cannot be driven).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import onnxruntime
import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from facebatch_gui.core.appsettings import AppSettings
from facebatch_gui.core.packs import CATALOG, LICENCE_NOTICE, PackManager
from facebatch_gui.core.store.sqlite import SqliteStore
from facebatch_gui.qt.about_dialog import AboutDialog
from facebatch_gui.qt.first_run import FirstRunDialog
from facebatch_gui.qt.main_window import SETTINGS_KEY, MainWindow
from facebatch_gui.qt.models_dialog import ModelsDialog, PackTableModel
from tests.support.packserver import PackServer
from tests.support.qtdialogs import answer_next_message_box
from tests.test_packs import make_zip

KNOWN = ("buffalo_l", "buffalo_m", "buffalo_s", "buffalo_sc", "antelopev2")


@pytest.fixture(scope="module")
def pack_zip(model_dir: Path) -> bytes:
    return make_zip(model_dir)


@pytest.fixture
def server(pack_zip: bytes) -> Iterator[PackServer]:
    with PackServer({"p.zip": pack_zip}) as srv:
        yield srv


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty INSIGHTFACE_HOME: no pack anywhere, as on a fresh machine."""
    home = tmp_path / "insightface"
    monkeypatch.setenv("INSIGHTFACE_HOME", str(home))
    monkeypatch.delenv("FACEBATCH_MODEL_DIR", raising=False)
    return home / "models"


@pytest.fixture
def make_dialog(qtbot, root: Path) -> Iterator[Callable[..., ModelsDialog]]:
    made: list[ModelsDialog] = []

    def make(manager: PackManager | None = None, **kwargs: object) -> ModelsDialog:
        dialog = ModelsDialog(manager or PackManager(root), **kwargs)  # type: ignore[arg-type]
        qtbot.addWidget(dialog)
        dialog.show()
        made.append(dialog)
        return dialog

    yield make
    for dialog in made:
        dialog.shutdown()
        assert dialog.job is None or dialog.job.wait(5), "a pack job outlived its test"


@pytest.fixture
def make_window(qtbot, tmp_path: Path, root: Path) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []

    def make(model_dir: str | None = None) -> MainWindow:
        qsettings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
        qsettings.setValue(SETTINGS_KEY, AppSettings(model_dir=model_dir).model_dump_json())
        window = MainWindow(qsettings, store=SqliteStore(tmp_path / "faces.db"), load_models=False)
        qtbot.addWidget(window)
        window.show()
        made.append(window)
        return window

    yield make
    for window in made:
        for dialog in window.findChildren(ModelsDialog):
            dialog.shutdown()
        window.shutdown()


def _status(dialog: ModelsDialog, name: str) -> str:
    return dialog.status_of(name)


def _wait_job(qtbot, dialog: ModelsDialog, timeout: int = 60_000) -> None:
    qtbot.waitUntil(lambda: dialog.running is None, timeout=timeout)


def test_table_lists_known_packs_with_sizes_and_installed_ones(
    make_dialog, root: Path, model_dir: Path
) -> None:
    setup = PackManager(root, check_models=False)
    setup.import_pack(model_dir, "buffalo_s")
    setup.import_pack(model_dir, "mine")
    dialog = make_dialog(current_model_dir=str(root / "mine"))
    model = dialog.model
    names = [model.index(r, PackTableModel.NAME).data() for r in range(model.rowCount())]
    assert names[:5] == list(KNOWN) and names[5:] == ["mine"]
    size = model.index(0, PackTableModel.SIZE).data()
    assert size == f"{CATALOG['buffalo_l'].size / 1e6:,.1f} MB" == "288.6 MB"
    assert model.index(3, PackTableModel.SIZE).data() == "15.0 MB"
    sha = model.index(0, PackTableModel.SHA).data()
    assert sha == CATALOG["buffalo_l"].sha256[:12]  # type: ignore[index]
    assert _status(dialog, "buffalo_s") == "installed"
    assert _status(dialog, "buffalo_l") == "not installed"
    assert _status(dialog, "mine") == "in use"
    assert "non-commercial" in dialog.licence_label.text()
    # Buttons follow the selection: an installed pack can be verified but not downloaded.
    dialog.select("buffalo_s")
    assert dialog.verify_button.isEnabled() and not dialog.download_button.isEnabled()
    dialog.select("buffalo_l")
    assert dialog.download_button.isEnabled() and not dialog.use_button.isEnabled()


def test_download_shows_progress_then_use_loads_the_engine_in_the_window(
    qtbot, make_window, server: PackServer, pack_zip: bytes, root: Path
) -> None:
    server.delay_s = 0.01  # about 1.5 s for the zip: several progress events
    window = make_window()
    window.act_models.trigger()
    dialog = window.findChild(ModelsDialog)
    assert isinstance(dialog, ModelsDialog) and dialog.isVisible()
    dialog.url_overrides["buffalo_sc"] = server.url("packs/p.zip")
    dialog.sha256_overrides["buffalo_sc"] = hashlib.sha256(pack_zip).hexdigest()
    values: list[int] = []  # the bar while downloading (extracting starts it again from 0)
    labels: list[str] = []

    def seen(value: int) -> None:
        labels.append(dialog.progress_label.text())
        if dialog.last_progress is not None and dialog.last_progress.stage == "downloading":
            values.append(value)

    dialog.progress_bar.valueChanged.connect(seen)
    dialog.select("buffalo_sc")
    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert dialog.progress_area.isVisible() and dialog.cancel_button.isEnabled()
    _wait_job(qtbot, dialog)

    mid = [v for v in values if 0 < v < 1000]
    assert len(mid) >= 3 and mid == sorted(mid), values
    total = f"{len(pack_zip) / 1e6:,.1f} MB"
    during = [t for t in labels if "downloading" in t and "ETA" in t]
    assert during, labels
    assert f" of {total}" in during[-1] and "MB/s" in during[-1]
    assert (root / "buffalo_sc").is_dir()
    assert _status(dialog, "buffalo_sc") == "installed"
    assert "installed buffalo_sc" in dialog.message.text()
    assert not dialog.progress_area.isVisible()

    with qtbot.waitSignal(dialog.packChosen, timeout=5000) as chosen:
        qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    assert chosen.args == [str(root / "buffalo_sc")]
    assert window.settings.model_dir == str(root / "buffalo_sc")
    qtbot.waitUntil(lambda: window._engine_state == "ready", timeout=60_000)
    assert window.models_label.text().startswith("Models: buffalo_sc")
    assert _status(dialog, "buffalo_sc") == "in use"


def test_cancel_mid_download_installs_nothing_and_keeps_the_partial(
    qtbot, make_dialog, server: PackServer, root: Path
) -> None:
    server.delay_s = 0.05  # about 6 s in all
    dialog = make_dialog(url_overrides={"buffalo_m": server.url("packs/p.zip")})
    assert dialog.download("buffalo_m")
    qtbot.waitUntil(lambda: dialog.progress_bar.value() > 30, timeout=30_000)
    assert "ETA" in dialog.progress_label.text()
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    _wait_job(qtbot, dialog, 30_000)
    assert not (root / "buffalo_m").exists()
    assert _status(dialog, "buffalo_m").startswith("partial download ")
    assert "Cancelled" in dialog.message.text()
    dialog.select("buffalo_m")
    assert dialog.download_button.text() == "Resume download"


def test_a_stalled_connection_is_said_so(qtbot, make_dialog, server: PackServer) -> None:
    server.delay_s = 4.0  # one 64 KiB chunk, then four silent seconds
    dialog = make_dialog(url_overrides={"buffalo_m": server.url("packs/p.zip")})
    dialog.stall_after_s = 1.5
    dialog.download("buffalo_m")
    qtbot.waitUntil(lambda: "stalled for" in dialog.progress_label.text(), timeout=10_000)
    assert "import" in dialog.progress_label.text()
    dialog.cancel()
    _wait_job(qtbot, dialog, 15_000)


def test_offline_download_says_how_to_import_instead(qtbot, make_dialog, root: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dialog = make_dialog(
        PackManager(root, retries=0, connect_timeout_s=2),
        url_overrides={"buffalo_l": f"http://127.0.0.1:{port}/buffalo_l.zip"},
    )
    assert dialog.download("buffalo_l")
    _wait_job(qtbot, dialog, 20_000)
    text = dialog.message.text()
    assert dialog.message.isVisible() and dialog.message.property("kind") == "error"
    assert "Download of buffalo_l failed" in text
    assert "Import" in text and "without internet" in text.lower()
    assert _status(dialog, "buffalo_l") == "not installed"


def test_import_zip_and_folder_verify_and_remove(
    qtbot, make_dialog, root: Path, model_dir: Path, pack_zip: bytes, tmp_path: Path
) -> None:
    archive = tmp_path / "buffalo_s.zip"
    archive.write_bytes(pack_zip)
    dialog = make_dialog()
    assert dialog.import_zip(archive)
    _wait_job(qtbot, dialog)
    assert _status(dialog, "buffalo_s") == "installed", dialog.message.text()
    assert dialog.import_folder(model_dir, "copied")
    _wait_job(qtbot, dialog)
    assert _status(dialog, "copied") == "installed", dialog.message.text()
    assert (root / "copied" / "mobilefacenet.onnx").is_file()

    dialog.select("copied")
    qtbot.mouseClick(dialog.verify_button, Qt.MouseButton.LeftButton)
    _wait_job(qtbot, dialog)
    assert "copied: OK" in dialog.message.text() and "detection" in dialog.message.text()

    # Importing it again under the same name is refused in words, not a crash.
    assert dialog.import_folder(model_dir, "copied")
    _wait_job(qtbot, dialog)
    assert "Import of copied failed" in dialog.message.text()
    assert "installed already" in dialog.message.text()

    seen: list[str] = []
    answer_next_message_box(QMessageBox.StandardButton.No, seen)
    qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
    assert (root / "copied").is_dir() and "Delete model pack copied" in seen[0]
    with qtbot.waitSignal(dialog.packRemoved, timeout=5000):
        answer_next_message_box(QMessageBox.StandardButton.Yes, seen)
        qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
    assert not (root / "copied").exists()
    assert dialog.model.row_of("copied") is None
    assert _status(dialog, "buffalo_s") == "installed"


def test_first_run_offers_a_pack_and_later_leaves_the_window_usable(
    qtbot, make_window, root: Path
) -> None:
    window = make_window()
    dialog = window.offer_first_run()
    assert isinstance(dialog, FirstRunDialog)
    qtbot.waitUntil(dialog.isVisible, timeout=5000)
    assert not dialog.isModal()
    assert dialog.download_button.text() == "Download buffalo_l (288.6 MB)"
    qtbot.mouseClick(dialog.later_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    window.paste_text("alice,http://127.0.0.1:9/a.jpg")
    assert window.model.rows[0].user_id == "alice"
    assert window.act_save.isEnabled()


def test_first_run_download_installs_and_uses_the_default_pack(
    qtbot, make_window, server: PackServer, root: Path
) -> None:
    window = make_window()
    models = window.open_models_dialog()  # the first-run button reuses this dialog
    models.url_overrides["buffalo_l"] = server.url("packs/p.zip")
    models.hide()
    first = window.offer_first_run()
    assert first is not None
    qtbot.mouseClick(first.download_button, Qt.MouseButton.LeftButton)
    assert models.isVisible() and models.running is not None
    _wait_job(qtbot, models)
    qtbot.waitUntil(lambda: window._engine_state == "ready", timeout=60_000)
    assert window.settings.model_dir == str(root / "buffalo_l")
    assert window.models_label.text().startswith("Models: buffalo_l")


def test_no_first_run_when_a_pack_folder_is_configured(
    make_window, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert make_window(model_dir=str(model_dir)).offer_first_run() is None
    monkeypatch.setenv("FACEBATCH_MODEL_DIR", str(model_dir))
    assert make_window().offer_first_run() is None


def test_about_shows_versions_and_licences(qtbot, make_window) -> None:
    window = make_window()
    seen: list[tuple[str, str]] = []

    def read_and_close() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, AboutDialog):
            QTimer.singleShot(20, read_and_close)
            return
        seen.append((box.versions_label.text(), box.licence_label.text()))
        box.reject()

    QTimer.singleShot(20, read_and_close)
    window.act_about.trigger()
    versions, licences = seen[0]
    assert "ONNX Runtime" in versions and onnxruntime.__version__ in versions
    assert "InsightFace" in versions and "PySide6" in versions
    assert LICENCE_NOTICE.split("https://")[0] in licences  # the address is a link
    assert 'href="https://github.com/deepinsight/insightface#license"' in licences
    assert "LGPLv3" in licences and "Apache 2.0" in licences
