"""The preview pane on a real Qt event loop (offscreen): real models, real photos from the loopback
image server, a real SQLite store, and real rendering checked in grabbed pixels."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from PySide6.QtGui import QColor, QImage

from facebatch_gui.core.analysis import analyse_image, decode_for_analysis
from facebatch_gui.core.errors import ErrorCode
from facebatch_gui.core.records import ItemResult
from facebatch_gui.core.settings import BatchSettings, FetchSettings, MultiFacePolicy
from facebatch_gui.core.store import FaceRecord, SqliteStore
from facebatch_gui.qt import preview
from facebatch_gui.qt.preview import (
    CHOSEN_COLOUR,
    OTHER_COLOUR,
    REJECTED_COLOUR,
    PreviewData,
    PreviewPane,
)
from tests.support.imageserver import ImageServer

FETCH = FetchSettings(retries=0, read_timeout_s=10, backoff_s=0.01)
WAIT_MS = 30_000


def _settings(**quality: object) -> BatchSettings:
    settings = BatchSettings(fetch=FETCH)
    return settings.model_copy(update={"quality": settings.quality.model_copy(update=quality)})


@pytest.fixture(autouse=True)
def _no_preview_work_left() -> Iterator[None]:
    """Fail any test that leaves a preview pane's pool working, like the batch-runner check."""
    yield
    busy = [p for p in list(PreviewPane.instances) if p.active_jobs() > 0]
    for pane in busy:
        pane.shutdown(10_000)
    assert not busy, "test left preview work running"


@pytest.fixture
def pane(qtbot, engine, store: SqliteStore) -> Iterator[PreviewPane]:
    p = PreviewPane()
    qtbot.addWidget(p)
    p.resize(560, 860)
    p.set_context(lambda: engine, store, _settings())
    p.show()
    qtbot.waitExposed(p)
    yield p
    assert p.shutdown(15_000)


def show(qtbot, pane: PreviewPane, user_id: str, url: str, result=None) -> PreviewData:
    """show_row and wait until the pane shows that row's computed preview."""
    with qtbot.waitSignal(
        pane.previewed, timeout=WAIT_MS, check_params_cb=lambda d: d.user_id == user_id
    ):
        pane.show_row(user_id, url, result)
    data = pane.last_result
    assert data is not None
    assert data.user_id == user_id
    return data


def manifest_faces(faces_dir: Path, rel: str) -> str:
    with (faces_dir / "manifest.csv").open(newline="") as fh:
        return next(row["faces"] for row in csv.DictReader(fh) if row["path"] == rel)


def colour_near(image: QImage, x: float, y: float, colour: QColor, radius: int = 3) -> bool:
    """A pixel within `radius` of (x, y) close to `colour` (antialiasing shifts it slightly)."""
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            px, py = round(x) + dx, round(y) + dy
            if not (0 <= px < image.width() and 0 <= py < image.height()):
                continue
            c = image.pixelColor(px, py)
            if (
                abs(c.red() - colour.red()) < 40
                and abs(c.green() - colour.green()) < 40
                and abs(c.blue() - colour.blue()) < 40
            ):
                return True
    return False


def enrol(store: SqliteStore, engine, user_id: str, path: Path) -> None:
    """Commit a real face (embedding and thumbnail from analyse_image) straight to the store."""
    q = BatchSettings().quality
    a = analyse_image(engine, decode_for_analysis(path.read_bytes(), q), q)
    face = FaceRecord(
        user_id=user_id,
        embedding=a.embedding,
        pack=engine.identity,
        bbox=a.bbox,
        det_score=a.chosen.score,
        quality=a.quality.model_dump(),
        thumbnail_jpeg=a.thumbnail_jpeg(),
    )
    ok = ItemResult(user_id=user_id, status=True)
    store.commit_registration(None, 0, face, ok, replace=False, create_user=True)


def test_single_face_shows_its_box_figures_and_aligned_crop(
    qtbot, pane: PreviewPane, image_server: ImageServer
) -> None:
    url = image_server.url("faces/identities/obama/1.jpg")
    data = show(qtbot, pane, "u-obama", url)
    assert data.problem is None
    assert data.face_count == 1
    assert data.would_pass is True
    assert data.error_code is None
    chosen = data.chosen
    assert chosen is not None
    assert data.photo is not None
    x1, y1, x2, y2 = chosen.bbox
    assert 0 <= x1 < x2 <= data.photo.width()
    assert 0 <= y1 < y2 <= data.photo.height()
    assert len(chosen.kps) == 5
    assert data.aligned is not None
    assert (data.aligned.width(), data.aligned.height()) == (112, 112)
    assert data.det_score is not None and data.det_score > 0.6
    assert data.face_size is not None and data.face_size > 100
    assert data.blur is not None and data.blur > 25
    assert data.source_size == (910, 1137)
    # The pane shows it: pending status, figures filled, the aligned thumbnail and no error text.
    assert pane.title.text() == "u-obama"
    assert "not processed" in pane.status_label.text()
    assert pane.figures["det_score"].text().startswith(f"{data.det_score:.2f}")
    assert pane.figures["faces"].text() == "1"
    assert "910×1137" in pane.figures["image"].text()
    assert pane.aligned_view.isVisible()
    assert pane.aligned_view.image is data.aligned
    assert not pane.matched_view.isVisible()
    assert not pane.message_label.isVisible()
    assert "passes" in pane.notice_label.text()
    # The chosen face is drawn in green on screen.
    shot = pane.photo_view.grab().toImage()
    top_mid = pane.photo_view.map_from_image((x1 + x2) / 2, y1)
    assert colour_near(shot, top_mid.x(), top_mid.y(), CHOSEN_COLOUR)


def test_multi_face_photo_shows_every_face_and_why_it_would_fail(
    qtbot, pane: PreviewPane, image_server: ImageServer, faces_dir: Path, engine
) -> None:
    rel = "multi/kit_with_rose.jpg"
    data = show(qtbot, pane, "u-group", image_server.url(f"faces/{rel}"))
    q = BatchSettings().quality
    detected = engine.detect(decode_for_analysis((faces_dir / rel).read_bytes(), q).bgr)
    assert data.face_count == int(manifest_faces(faces_dir, rel)) == len(detected) == 2
    assert data.would_pass is False
    assert data.error_code == ErrorCode.MULTIPLE_FACES
    assert data.chosen is None
    assert data.aligned is None
    assert "would fail with multiple_faces" in pane.notice_label.text()
    assert pane.figures["faces"].text().startswith("2")

    # Real rendering: the box colour is on screen on every box's top edge, and gone without boxes.
    def edges_coloured() -> list[bool]:
        shot = pane.photo_view.grab().toImage()
        found = []
        for face in data.faces:
            x1, y1, x2, y2 = face.bbox
            for px, py in (((x1 + x2) / 2, y1), (x1, (y1 + y2) / 2)):
                at = pane.photo_view.map_from_image(px, py)
                found.append(colour_near(shot, at.x(), at.y(), OTHER_COLOUR))
        return found

    assert all(edges_coloured())
    pane.boxes_check.setChecked(False)
    assert not any(edges_coloured())
    pane.boxes_check.setChecked(True)


def test_multi_face_row_outcome_from_the_result_and_largest_policy(
    qtbot, pane: PreviewPane, image_server: ImageServer, engine, store: SqliteStore
) -> None:
    url = image_server.url("faces/multi/two_people.jpg")
    result = ItemResult(
        user_id="u-two",
        status=False,
        error_code=ErrorCode.MULTIPLE_FACES,
        error_message="2 faces found, and the policy is to reject photos with more than one",
        face_count=2,
    )
    show(qtbot, pane, "u-two", url, result)
    assert "multiple_faces" in pane.status_label.text()
    assert pane.message_label.isVisible()
    assert "2 faces found" in pane.message_label.text()
    # Under the `largest` policy the same photo would pass, with the bigger face chosen.
    with qtbot.waitSignal(pane.previewed, timeout=WAIT_MS):
        pane.set_context(lambda: engine, store, _settings(multi_face=MultiFacePolicy.LARGEST))
    data = pane.last_result
    assert data is not None
    assert data.would_pass is True
    chosen = data.chosen
    assert chosen is not None
    assert chosen.size_px == max(f.size_px for f in data.faces)


def test_duplicate_row_shows_the_matched_enrolled_face(
    qtbot, pane: PreviewPane, image_server: ImageServer, engine, store: SqliteStore, faces_dir
) -> None:
    enrol(store, engine, "u-obama", faces_dir / "identities/obama/1.jpg")
    result = ItemResult(
        user_id="u-obama-again",
        status=False,
        error_code=ErrorCode.DUPLICATE_FACE,
        error_message="This face matches user 'u-obama', enrolled already",
        duplicate_of="u-obama",
        similarity=0.66,
    )
    url = image_server.url("faces/identities/obama/2.jpg")
    data = show(qtbot, pane, "u-obama-again", url, result)
    matched = data.matched
    assert matched is not None
    assert matched.user_id == "u-obama"
    assert matched.thumbnail is not None
    assert (matched.thumbnail.width(), matched.thumbnail.height()) == (112, 112)
    assert matched.similarity is not None
    assert matched.similarity >= BatchSettings().quality.duplicate_threshold
    assert pane.matched_view.isVisible()
    assert pane.matched_view.image is matched.thumbnail
    assert "u-obama" in pane.matched_view.caption.text()
    assert "0.66" in pane.matched_view.caption.text()
    assert "duplicate_face" in pane.status_label.text()
    assert data.enrolled is None  # the duplicate itself has no face in the store
    assert not pane.enrolled_view.isVisible()


def test_succeeded_row_shows_the_stored_face(
    qtbot, pane: PreviewPane, image_server: ImageServer, engine, store: SqliteStore, faces_dir
) -> None:
    enrol(store, engine, "u-rose", faces_dir / "identities/rose_leslie/1.jpg")
    url = image_server.url("faces/identities/rose_leslie/1.jpg")
    data = show(qtbot, pane, "u-rose", url, ItemResult(user_id="u-rose", status=True))
    assert data.enrolled is not None
    assert data.enrolled.thumbnail is not None
    assert data.enrolled.similarity is not None and data.enrolled.similarity > 0.99
    assert pane.enrolled_view.isVisible()
    assert "enrolled" in pane.status_label.text()


def test_blurred_face_fails_with_its_figures_and_a_red_box(
    qtbot, pane: PreviewPane, faces_dir: Path, tmp_path: Path
) -> None:
    """A local file (the fetcher accepts paths), blurred the way test_batches makes one."""
    kit = cv2.imread(str(faces_dir / "identities/kit_harington/1.jpg"))
    path = tmp_path / "blurred.png"
    cv2.imwrite(str(path), cv2.GaussianBlur(kit, (25, 25), 0))
    data = show(qtbot, pane, "u-blurred", str(path))
    assert data.would_pass is False
    assert data.error_code == ErrorCode.LOW_QUALITY
    chosen = data.chosen
    assert chosen is not None  # the face a batch picked, then refused
    assert data.aligned is not None
    assert data.blur is not None and data.blur < BatchSettings().quality.min_blur
    assert data.error_message is not None and f"{data.blur:.1f}" in data.error_message
    assert "would fail with low_quality" in pane.notice_label.text()
    assert "color" in pane.figures["blur"].styleSheet()  # the failing figure stands out
    assert "color" not in pane.figures["det_score"].styleSheet()
    shot = pane.photo_view.grab().toImage()
    x1, y1, x2, _ = chosen.bbox
    top_mid = pane.photo_view.map_from_image((x1 + x2) / 2, y1)
    assert colour_near(shot, top_mid.x(), top_mid.y(), REJECTED_COLOUR)
    assert not colour_near(shot, top_mid.x(), top_mid.y(), CHOSEN_COLOUR)


def test_clear_forgets_the_row(qtbot, pane: PreviewPane, image_server: ImageServer) -> None:
    show(qtbot, pane, "u-obama", image_server.url("faces/identities/obama/1.jpg"))
    pane.clear()
    assert pane.last_result is None
    assert pane.title.text() == "No user selected"
    assert pane.photo_view.image_rect().isEmpty()
    assert not pane.aligned_view.isVisible()


def test_the_cache_keeps_only_the_latest_rows(
    qtbot, pane: PreviewPane, image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preview, "CACHE_SIZE", 2)
    rels = ["identities/biden/1.jpg", "identities/biden/2.jpg", "identities/obama/2.jpg"]
    first = "/faces/identities/biden/1.jpg"
    before = image_server.hits[first]
    for i, rel in enumerate(rels):
        show(qtbot, pane, f"u-{i}", image_server.url(f"faces/{rel}"))
    assert image_server.hits[first] == before + 1
    # The first row was evicted: showing it again downloads it again; then it is cached.
    show(qtbot, pane, "u-0", image_server.url(f"faces/{rels[0]}"))
    assert image_server.hits[first] == before + 2
    show(qtbot, pane, "u-0", image_server.url(f"faces/{rels[0]}"))
    assert image_server.hits[first] == before + 2
    # A memory budget smaller than two photos keeps only the row on show.
    monkeypatch.setattr(preview, "CACHE_SIZE", 32)
    monkeypatch.setattr(preview, "CACHE_BYTES", 1)
    show(qtbot, pane, "u-1", image_server.url(f"faces/{rels[1]}"))
    assert len(pane._cache) == 1


def test_stale_results_are_dropped_and_going_back_is_cached(
    qtbot, pane: PreviewPane, image_server: ImageServer
) -> None:
    slow = image_server.url("slow/1500/identities/biden/1.jpg")
    fast = image_server.url("faces/identities/kit_harington/1.jpg")
    pane.show_row("u-slow", slow, None)
    data = show(qtbot, pane, "u-fast", fast)
    assert data.face_count == 1
    # Let the slow row finish: its result must not replace what is on show.
    qtbot.waitUntil(lambda: pane.stale_dropped >= 1, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: pane.active_jobs() == 0, timeout=WAIT_MS)
    qtbot.wait(50)
    assert pane.last_result is data
    assert pane.title.text() == "u-fast"
    # Going back to a row seen before is answered from the cache, synchronously.
    hits = image_server.hits["/faces/identities/kit_harington/1.jpg"]
    pane.show_row("u-other", image_server.url("faces/identities/biden/2.jpg"), None)
    with qtbot.waitSignal(pane.previewed, timeout=1000):
        pane.show_row("u-fast", fast, None)
    assert pane.last_result is data
    assert image_server.hits["/faces/identities/kit_harington/1.jpg"] == hits
    qtbot.waitUntil(lambda: pane.active_jobs() == 0, timeout=WAIT_MS)


def test_the_same_row_again_does_not_restart_its_job(
    qtbot, pane: PreviewPane, image_server: ImageServer
) -> None:
    """A window that re-selects the row on every progress tick must still get its preview."""
    route = "slow/600/identities/rose_leslie/2.jpg"
    url = image_server.url(route)
    with qtbot.waitSignal(pane.previewed, timeout=WAIT_MS):
        for _ in range(5):
            pane.show_row("u-rose", url, None)
            qtbot.wait(50)
    assert image_server.hits["/" + route] == 1
    assert pane.stale_dropped == 0
    assert pane.url_label.full_text() == url
    # A new outcome for the row is a different preview (the store may hold its face now).
    with qtbot.waitSignal(pane.previewed, timeout=WAIT_MS):
        pane.show_row("u-rose", url, ItemResult(user_id="u-rose", status=True))
    assert image_server.hits["/" + route] == 2
    assert "enrolled" in pane.status_label.text()


def test_a_404_shows_a_message(qtbot, pane: PreviewPane, image_server: ImageServer) -> None:
    data = show(qtbot, pane, "u-missing", image_server.url("status/404"))
    assert data.problem_kind == "download"
    assert data.error_code == ErrorCode.DOWNLOAD_FAILED
    assert data.photo is None
    assert pane.notice_label.isVisible()
    assert "404" in pane.notice_label.text()
    assert "Could not download" in pane.notice_label.text()
    assert not pane.aligned_view.isVisible()


def test_not_an_image_shows_a_message(qtbot, pane: PreviewPane, image_server: ImageServer) -> None:
    data = show(qtbot, pane, "u-html", image_server.url("page.html"))
    assert data.error_code == ErrorCode.NOT_AN_IMAGE
    assert "HTML" in pane.notice_label.text()


def test_models_loading_shows_the_photo_and_a_message_then_the_faces(
    qtbot, image_server: ImageServer, engine, store: SqliteStore
) -> None:
    loaded: list[object] = []
    pane = PreviewPane()
    qtbot.addWidget(pane)
    pane.set_context(lambda: loaded[0] if loaded else None, store, _settings())
    pane.show()
    try:
        data = show(qtbot, pane, "u-kit", image_server.url("faces/identities/kit_harington/2.jpg"))
        assert data.problem_kind == "engine"
        assert "models are still loading" in pane.notice_label.text()
        assert data.photo is not None  # the photo shows while the models load
        assert data.faces == []
        # The models arrive: the pane notices by itself and draws the faces.
        loaded.append(engine)
        with qtbot.waitSignal(
            pane.previewed, timeout=WAIT_MS, check_params_cb=lambda d: d.problem is None
        ):
            pass
        assert pane.last_result is not None
        assert pane.last_result.face_count == 1
        assert "loading" not in pane.notice_label.text()
    finally:
        assert pane.shutdown(15_000)


def test_shutdown_waits_for_the_pool_and_ignores_later_rows(
    qtbot, engine, store: SqliteStore, image_server: ImageServer
) -> None:
    pane = PreviewPane()
    qtbot.addWidget(pane)
    pane.set_context(lambda: engine, store, _settings())
    pane.show_row("u-slow", image_server.url("slow/800/identities/obama/2.jpg"), None)
    qtbot.waitUntil(lambda: pane.active_jobs() == 1, timeout=5_000)
    assert pane.shutdown(15_000)
    assert pane.active_jobs() == 0
    seen: list[object] = []
    pane.previewed.connect(seen.append)
    pane.show_row("u-after", image_server.url("faces/identities/obama/1.jpg"), None)
    assert pane.active_jobs() == 0
    qtbot.wait(100)
    assert seen == []


@pytest.mark.skipif(not os.environ.get("FACEBATCH_SHOTS"), reason="set FACEBATCH_SHOTS=DIR")
def test_save_screenshots(qtbot, pane: PreviewPane, image_server: ImageServer) -> None:
    out = Path(os.environ["FACEBATCH_SHOTS"])
    show(qtbot, pane, "u-group", image_server.url("faces/multi/obama_and_biden.jpg"))
    assert pane.grab().save(str(out / "preview_multi.png"))
    show(qtbot, pane, "u-alex", image_server.url("faces/identities/alex_lacamoire/1.jpg"))
    assert pane.grab().save(str(out / "preview_single.png"))
