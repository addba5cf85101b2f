"""Screenshot of the Models dialog mid-download (for the issue's closing note), and optionally of
the first-run and About dialogs, to look at them without a display.

A loopback PackServer (tests/support/packserver.py) serves a stand-in file of the chosen catalog
pack's exact size, slowed to about --rate MB/s, so the progress line shows realistic figures; the
dialog downloads it into a throw-away INSIGHTFACE_HOME, the shot is taken once the bar passes
--at, and the download is then cancelled (the stand-in is not a pack: nothing is installed).
With --others DIR, first-run.png and about.png are written there too.

    QT_QPA_PLATFORM=offscreen python scripts/models_dialog_shot.py [OUT.png] [--others DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", default=str(REPO / "screenshots" / "models-dialog.png"))
    p.add_argument("--pack", default="buffalo_l")
    p.add_argument("--rate", type=float, default=6.0, help="MB/s the server sends at")
    p.add_argument("--at", type=float, default=0.42, help="fraction downloaded at the shot")
    p.add_argument("--others", help="folder for first-run.png and about.png")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="facebatch-shot-"))
    os.environ["INSIGHTFACE_HOME"] = str(tmp / "insightface")
    os.environ.pop("FACEBATCH_MODEL_DIR", None)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from facebatch_gui.core.packs import CATALOG, PackManager
    from facebatch_gui.qt.icons import app_icon
    from facebatch_gui.qt.models_dialog import ModelsDialog
    from tests.support.packserver import PackServer

    app = QApplication(sys.argv[:1])
    app.setWindowIcon(app_icon())
    size = CATALOG[args.pack].size or 100_000_000
    with PackServer({"pack.zip": bytes(size)}) as server:
        server.delay_s = 65536 / (args.rate * 1e6)
        dialog = ModelsDialog(
            PackManager(), None, url_overrides={args.pack: server.url("packs/pack.zip")}
        )
        dialog.resize(1000, 500)
        dialog.show()
        dialog.download(args.pack)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            app.processEvents()
            shown = dialog.last_progress
            if shown is not None and (shown.fraction or 0) >= args.at and shown.eta_s:
                break
            time.sleep(0.02)
        for _ in range(5):
            app.processEvents()
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        dialog.grab().save(str(out))
        print(f"wrote {out}: {dialog.progress_label.text()}")
        dialog.cancel()
        while dialog.running is not None and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        dialog.shutdown()
        dialog.deleteLater()  # gone while the QApplication lives, not at interpreter exit
        app.processEvents()
        del dialog

    if args.others:
        from facebatch_gui.core.store.sqlite import SqliteStore
        from facebatch_gui.qt.about_dialog import AboutDialog
        from facebatch_gui.qt.main_window import MainWindow

        others = Path(args.others)
        others.mkdir(parents=True, exist_ok=True)
        qsettings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(qsettings, store=SqliteStore(tmp / "faces.db"), load_models=False)
        window.show()
        first = window.offer_first_run()
        about = AboutDialog(window)
        about.show()
        for _ in range(10):
            app.processEvents()
        if first is not None:
            first.grab().save(str(others / "first-run.png"))
        about.grab().save(str(others / "about.png"))
        print(f"wrote {others / 'first-run.png'} and {others / 'about.png'}")
        window.shutdown()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # PySide6 6.12.0 on Python 3.11 drops a reference to True on every Signal.emit(); a short
    # script's few thousand emits can bring True's count to zero at interpreter teardown
    # ("bool_dealloc" abort). The PNG is written; skip the teardown.
    os._exit(code)
