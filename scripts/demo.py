"""Run the app's main job for real: a register batch into the embedded SQLite store.

Serves the photos of `../shared/faces` on 127.0.0.1 (no internet needed), writes a user list with
their URLs (one photo per identity, a second photo of one person under another id, a group photo
and a dead link, so the report shows successes and each kind of failure), and runs
`facebatch register` on it with the offline model pack. Re-runs replace the earlier faces.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facebatch_gui.cli import main  # noqa: E402
from tests.support.imageserver import ImageServer  # noqa: E402

SHARED = Path(os.environ.get("FACEBATCH_SHARED", REPO.parent / "shared"))

USERS = [
    ("u-obama", "identities/obama/1.jpg"),
    ("u-biden", "identities/biden/1.jpg"),
    ("u-kit", "identities/kit_harington/1.jpg"),
    ("u-rose", "identities/rose_leslie/1.jpg"),
    ("u-alex", "identities/alex_lacamoire/1.jpg"),
    ("u-obama-again", "identities/obama/2.jpg"),
    ("u-group", "multi/kit_with_rose.jpg"),
    ("u-dead-link", "no/such/photo.jpg"),
]


def run() -> int:
    faces = SHARED / "faces"
    models = Path(os.environ.get("FACEBATCH_MODEL_DIR", SHARED / "models"))
    if not faces.is_dir():
        print(f"demo: no photos at {faces}; set FACEBATCH_SHARED", file=sys.stderr)
        return 2
    with ImageServer(faces) as server, tempfile.TemporaryDirectory() as tmp:
        user_list = Path(tmp) / "users.csv"
        with user_list.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["user_id", "avatar_image_url"])
            for user_id, path in USERS:
                writer.writerow([user_id, server.url(f"faces/{path}")])
        print(f"demo: registering {len(USERS)} users from {server.base_url}", file=sys.stderr)
        code = main(["register", str(user_list), "--model-dir", str(models), "--replace"])
    # Failures are part of the demonstration; only a setup problem (2) is a failed demo.
    return 0 if code in (0, 1) else code


if __name__ == "__main__":
    sys.exit(run())
