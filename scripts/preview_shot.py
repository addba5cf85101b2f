"""Screenshots of the preview pane on real photos, to look at it without the main window.

Loads the offline pack, enrols one photo into a throw-away SQLite store, and shows three rows the
way the main window would: a group photo that failed with multiple_faces, a single face not yet
processed, and a duplicate_face row. Writes /tmp/preview_multi.png, /tmp/preview_single.png and
/tmp/preview_duplicate.png (or into the folder given as the first argument).

    QT_QPA_PLATFORM=offscreen python scripts/preview_shot.py [OUT_DIR] [--dark]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facebatch_gui.core.analysis import analyse_image, decode_for_analysis  # noqa: E402
from facebatch_gui.core.engine import FaceEngine  # noqa: E402
from facebatch_gui.core.errors import ErrorCode, ItemError  # noqa: E402
from facebatch_gui.core.records import ItemResult, Operation, UserEntry  # noqa: E402
from facebatch_gui.core.settings import BatchSettings  # noqa: E402
from facebatch_gui.core.store import FaceRecord, SqliteStore  # noqa: E402

SHARED = Path(os.environ.get("FACEBATCH_SHARED", REPO.parent / "shared"))
FACES = SHARED / "faces"


def enrol(store: SqliteStore, engine: FaceEngine, user_id: str, path: Path) -> FaceRecord:
    settings = BatchSettings().quality
    a = analyse_image(engine, decode_for_analysis(path.read_bytes(), settings), settings)
    face = FaceRecord(
        user_id=user_id,
        embedding=a.embedding,
        pack=engine.identity,
        bbox=a.bbox,
        det_score=a.chosen.score,
        quality=a.quality.model_dump(),
        thumbnail_jpeg=a.thumbnail_jpeg(),
        source_url=str(path),
    )
    result = ItemResult(user_id=user_id, status=True)
    store.commit_registration(None, 0, face, result, replace=True, create_user=True)
    return face


def similarity(engine: FaceEngine, face: FaceRecord, path: Path) -> float:
    """What the batch's duplicate check computes: cosine of the two embeddings."""
    settings = BatchSettings().quality
    a = analyse_image(engine, decode_for_analysis(path.read_bytes(), settings), settings)
    return round(float(face.embedding @ a.embedding), 4)


def batch_failure(engine: FaceEngine, user_id: str, path: Path) -> ItemResult:
    """The ItemResult a batch gives this photo, so the screenshot shows real messages."""
    settings = BatchSettings().quality
    try:
        analyse_image(engine, decode_for_analysis(path.read_bytes(), settings), settings)
    except ItemError as exc:
        entry = UserEntry(user_id, str(path))
        return ItemResult.failure(entry, Operation.REGISTER, exc.code, exc.message, **exc.details)
    raise SystemExit(f"{path} was expected to fail")


def main() -> None:
    out = Path(next((a for a in sys.argv[1:] if not a.startswith("--")), "/tmp"))
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    from facebatch_gui.qt.preview import PreviewPane

    app = QApplication.instance() or QApplication(sys.argv[:1])
    if "--dark" in sys.argv:
        app.setStyle("Fusion")
        pal = QPalette()
        for role, colour in (
            (QPalette.ColorRole.Window, "#2b2b2b"),
            (QPalette.ColorRole.WindowText, "#e6e6e6"),
            (QPalette.ColorRole.Base, "#1e1e1e"),
            (QPalette.ColorRole.AlternateBase, "#333333"),
            (QPalette.ColorRole.Text, "#e6e6e6"),
            (QPalette.ColorRole.PlaceholderText, "#9a9a9a"),
            (QPalette.ColorRole.Button, "#3a3a3a"),
            (QPalette.ColorRole.ButtonText, "#e6e6e6"),
        ):
            pal.setColor(role, QColor(colour))
        app.setPalette(pal)
    engine = FaceEngine(Path(os.environ.get("FACEBATCH_MODEL_DIR", SHARED / "models")))
    tmp = tempfile.TemporaryDirectory()
    store = SqliteStore(Path(tmp.name) / "faces.db")
    enrolled = enrol(store, engine, "u-obama", FACES / "identities/obama/1.jpg")
    dup = FACES / "identities/obama/2.jpg"
    sim = similarity(engine, enrolled, dup)

    pane = PreviewPane()
    pane.resize(560, 860)
    pane.set_context(lambda: engine, store, BatchSettings())
    pane.show()
    suffix = "_dark" if "--dark" in sys.argv else ""
    multi = FACES / "multi/kit_with_rose.jpg"
    rows = [
        ("multi", "u-kit-and-rose", multi, batch_failure(engine, "u-kit-and-rose", multi)),
        ("single", "u-biden", FACES / "identities/biden/1.jpg", None),
        (
            "duplicate",
            "u-obama-2",
            dup,
            ItemResult(
                user_id="u-obama-2",
                status=False,
                error_code=ErrorCode.DUPLICATE_FACE,
                error_message="This face matches user 'u-obama', enrolled already "
                f"(similarity {sim:.2f} >= 0.45)",
                duplicate_of="u-obama",
                similarity=sim,
            ),
        ),
    ]
    for name, user_id, path, result in rows:
        pane.show_row(user_id, str(path), result)
        deadline = time.monotonic() + 30
        while (pane.last_result is None or pane.last_result.user_id != user_id) and (
            time.monotonic() < deadline
        ):
            app.processEvents()
            time.sleep(0.01)
        app.processEvents()
        target = out / f"preview_{name}{suffix}.png"
        pane.grab().save(str(target))
        print(target)
    pane.shutdown()
    store.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
