"""Render the main window after a real register batch to a PNG, so anyone can look at it.

Serves `../shared/faces` on 127.0.0.1, opens a user list with successes and each kind of failure,
registers it with the offline model pack into a throw-away SQLite store, selects a failed row so the
preview shows why, and saves the window. Usage: python scripts/screenshot.py [OUT.png] [--row ID]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.support.imageserver import ImageServer  # noqa: E402

SHARED = Path(os.environ.get("FACEBATCH_SHARED", REPO.parent / "shared"))
USERS = [
    ("u-obama", "faces/identities/obama/1.jpg"),
    ("u-biden", "faces/identities/biden/1.jpg"),
    ("u-kit", "faces/identities/kit_harington/1.jpg"),
    ("u-rose", "faces/identities/rose_leslie/1.jpg"),
    ("u-alex", "faces/identities/alex_lacamoire/1.jpg"),
    ("u-obama-again", "faces/identities/obama/2.jpg"),
    ("u-group", "faces/multi/obama_and_biden.jpg"),
    ("u-lin", "faces/probes/lin_manuel_miranda.png"),
    ("u-partial", "faces/edge/partial_face.jpg"),
    ("u-dead-link", "faces/no/such/photo.jpg"),
    ("u-not-image", "page.html"),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", nargs="?", default="screenshots/main-window.png")
    parser.add_argument("--row", default="u-group", help="user id to select for the preview")
    parser.add_argument("--size", default="1440x900")
    args = parser.parse_args()
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from facebatch_gui.core.engine import FaceEngine
    from facebatch_gui.core.store.sqlite import SqliteStore
    from facebatch_gui.qt.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    models = Path(os.environ.get("FACEBATCH_MODEL_DIR", SHARED / "models"))
    with ImageServer(SHARED / "faces") as server, tempfile.TemporaryDirectory() as tmp:
        users = Path(tmp) / "users.csv"
        with users.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["user_id", "avatar_image_url"])
            for uid, path in USERS:
                writer.writerow([uid, server.url(path)])
            writer.writerow(["u-obama", server.url("faces/identities/obama/1.jpg")])  # twice
            writer.writerow(["", "not a url"])
        qsettings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(
            qsettings,
            store=SqliteStore(Path(tmp) / "faces.db"),
            engine=FaceEngine(models),
            confirm=lambda *_: True,
        )
        width, height = (int(v) for v in args.size.split("x"))
        window.resize(width, height)
        window.show()
        window.load_path(users)
        # Fix the duplicate and the empty row the way an operator would, then register.
        window.model.setData(window.model.index(len(USERS), 1), "u-obama-2")
        window.model.setData(window.model.index(len(USERS) + 1, 1), "u-typo")
        task_id = window.register()
        deadline = time.monotonic() + 120
        while window.tasks.running_tasks() and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        print(f"task {task_id}: {window.model.counts()}")
        row = window.model.row_for(args.row)
        if row is not None:
            index = window.proxy.mapFromSource(window.model.index(row, 1))
            window.table.selectRow(index.row())
            window.table.setCurrentIndex(index)
        end = time.monotonic() + 15
        while time.monotonic() < end:  # let thumbnails and the preview arrive
            app.processEvents()
            time.sleep(0.05)
            if window.preview.property("busy") is False:
                break
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(out))
        print(f"saved {out}")
        window.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
