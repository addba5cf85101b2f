"""`facebatch-gui [FILE]`: the desktop application's entry point."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from facebatch_gui.core.cvcompat import scrub_cv2_qt_env

_T0 = time.perf_counter()


def build_parser() -> argparse.ArgumentParser:
    from facebatch_gui import __version__

    p = argparse.ArgumentParser(prog="facebatch-gui", description="FaceBatch desktop application")
    p.add_argument("file", nargs="?", help="a CSV/JSON user list or a folder of photos to open")
    p.add_argument("--settings", help="an INI file to keep settings in (default: per user)")
    p.add_argument("--version", action="version", version=f"FaceBatch {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scrub_cv2_qt_env()
    from PySide6.QtCore import QCoreApplication, QSettings, Qt, QTimer
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from facebatch_gui.qt.icons import app_icon
    from facebatch_gui.qt.main_window import MainWindow

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    QCoreApplication.setOrganizationName("FaceBatch")
    QCoreApplication.setApplicationName("FaceBatch")
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setWindowIcon(app_icon())
    qsettings = (
        QSettings(args.settings, QSettings.Format.IniFormat) if args.settings else QSettings()
    )
    window = MainWindow(qsettings)
    window.show()
    if os.environ.get("FACEBATCH_STARTUP_TRACE"):
        # Printed once the first frame is queued: what bench/startup.py measures.
        QTimer.singleShot(
            0, lambda: print(f"first-window {time.perf_counter() - _T0:.3f}s", flush=True)
        )
    if args.file:
        QTimer.singleShot(0, lambda: window.load_path(Path(args.file)))
    if os.environ.get("FACEBATCH_QUIT_AFTER_START"):
        QTimer.singleShot(int(os.environ["FACEBATCH_QUIT_AFTER_START"]), window.close)
    return int(app.exec())


if __name__ == "__main__":
    raise SystemExit(main())
