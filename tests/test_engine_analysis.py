"""The InsightFace engine and the per-user analysis on real photos with the offline pack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facebatch_gui.core.analysis import analyse_image, decode_for_analysis
from facebatch_gui.core.engine import FaceEngine, PackIdentity, resolve_model_dir
from facebatch_gui.core.errors import ErrorCode, ItemError, ModelPackError, PackMismatchError
from facebatch_gui.core.imaging import DecodedImage, decode_image
from facebatch_gui.core.settings import MultiFacePolicy, QualitySettings


def _decoded(path: Path) -> DecodedImage:
    return decode_for_analysis(path.read_bytes(), QualitySettings())


def _from_bgr(bgr: np.ndarray) -> DecodedImage:
    ok, buf = cv2.imencode(".png", bgr)
    assert ok
    return decode_image(buf.tobytes(), max_pixels=40_000_000, work_side=1280)


def _embedding(engine: FaceEngine, path: Path) -> np.ndarray:
    return analyse_image(engine, _decoded(path), QualitySettings()).embedding


def test_pack_is_routed_by_insightface_and_identified(engine: FaceEngine, model_dir: Path) -> None:
    assert type(engine.detector).__name__ == "SCRFD"
    assert type(engine.recognizer).__name__ == "ArcFaceONNX"
    ident = engine.identity
    assert ident.embedding_dim == 128
    assert ident.det_size == 640
    assert ident.detector_sha256.startswith("bc24bb34")  # from ../shared/models/README.md
    assert ident.recognizer_sha256.startswith("e72a5710")
    assert PackIdentity.from_json(ident.to_json()) == ident


def test_embeddings_are_unit_length(engine: FaceEngine, faces_dir: Path) -> None:
    emb = _embedding(engine, faces_dir / "identities/obama/1.jpg")
    assert emb.dtype == np.float32
    assert emb.shape == (128,)
    assert abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5


def test_same_person_similar_different_people_not(engine: FaceEngine, faces_dir: Path) -> None:
    """The README's reference figures: same identity 0.59-0.72, different ones at most 0.15."""
    ids = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
    first = {i: _embedding(engine, faces_dir / f"identities/{i}/1.jpg") for i in ids}
    threshold = QualitySettings().duplicate_threshold
    for ident in ids[1:]:
        second = _embedding(engine, faces_dir / f"identities/{ident}/2.jpg")
        assert float(first[ident] @ second) >= threshold, ident
    for a in ids:
        for b in ids:
            if a < b:
                assert float(first[a] @ first[b]) < 0.3, (a, b)


def test_comparing_different_packs_is_refused(engine: FaceEngine) -> None:
    other = PackIdentity("buffalo_l", "a" * 64, "b" * 64, 640, 512)
    with pytest.raises(PackMismatchError, match="not comparable"):
        engine.identity.check_comparable(other)
    same_space = PackIdentity("renamed", "x" * 64, engine.identity.recognizer_sha256, 320, 128)
    engine.identity.check_comparable(same_space)


def test_missing_or_empty_model_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelPackError, match="does not exist"):
        resolve_model_dir(tmp_path / "nope")
    with pytest.raises(ModelPackError, match=r"no \.onnx files"):
        FaceEngine(tmp_path)


def test_offline_without_default_pack_explains_how_to_get_one(tmp_path: Path) -> None:
    """INSIGHTFACE_HOME points at an empty folder and downloads are off: the advice must say how."""
    env_before = os.environ.get("INSIGHTFACE_HOME"), os.environ.pop("FACEBATCH_MODEL_DIR", None)
    os.environ["INSIGHTFACE_HOME"] = str(tmp_path)
    try:
        with pytest.raises(ModelPackError) as info:
            resolve_model_dir(None, download=False)
    finally:
        if env_before[0] is None:
            os.environ.pop("INSIGHTFACE_HOME", None)
        else:
            os.environ["INSIGHTFACE_HOME"] = env_before[0]
        if env_before[1] is not None:
            os.environ["FACEBATCH_MODEL_DIR"] = env_before[1]
    message = str(info.value)
    assert "buffalo_l" in message
    assert "--model-dir" in message
    assert "FACEBATCH_MODEL_DIR" in message


def test_folder_without_recogniser_is_rejected(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "scrfd.onnx").symlink_to(model_dir / "scrfd_2.5g_bnkps.onnx")
    with pytest.raises(ModelPackError, match="recognition"):
        FaceEngine(tmp_path)


def test_cv2_qt_variables_never_reach_pyside(model_dir: Path) -> None:
    """In a fresh interpreter: import insightface and cv2 through the engine, then start Qt."""
    code = f"""
import os
from pathlib import Path
import cv2  # opencv-python sets its Qt plugin path here
assert "QT_QPA_PLATFORM_PLUGIN_PATH" in os.environ, "cv2 no longer sets it: drop the guard?"
from facebatch_gui.core.engine import FaceEngine
FaceEngine(Path({str(model_dir)!r}))
assert "QT_QPA_PLATFORM_PLUGIN_PATH" not in os.environ
os.environ["QT_QPA_PLATFORM_PLUGIN_PATH"] = os.path.join(os.path.dirname(cv2.__file__), "qt")
from facebatch_gui.qt.runner import TaskManager  # the Qt layer scrubs again on import
assert "QT_QPA_PLATFORM_PLUGIN_PATH" not in os.environ
from PySide6.QtWidgets import QApplication, QLabel
app = QApplication([])
label = QLabel("x")
label.show()
app.processEvents()
print("plugins-ok", app.platformName())
"""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("QT_QPA_PLATFORM_PLUGIN_PATH", None)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "plugins-ok offscreen" in out.stdout


# -- analysis: each image-level error code on real input ------------------------------------------


def test_single_face_passes_with_figures(engine: FaceEngine, faces_dir: Path) -> None:
    image = _decoded(faces_dir / "identities/obama/1.jpg")
    a = analyse_image(engine, image, QualitySettings())
    assert len(a.faces) == 1
    assert a.quality.face_size >= 200
    assert a.quality.blur > 100
    assert a.aligned.shape == (112, 112, 3)
    assert a.thumbnail_jpeg()[:2] == b"\xff\xd8"
    x1, y1, x2, y2 = a.bbox
    assert 0 <= x1 < x2 <= image.width
    assert 0 <= y1 < y2 <= image.height


def test_boxes_are_in_source_pixels_for_reduced_images(engine: FaceEngine, faces_dir: Path) -> None:
    """obama_large is decoded at reduced size; its box must still be in the 1434x2333 source."""
    big = _decoded(faces_dir / "probes/obama_large.jpg")
    assert big.scale < 1
    a = analyse_image(engine, big, QualitySettings())
    assert a.bbox[2] > big.bgr.shape[1]  # beyond what the reduced image could give unscaled
    assert a.quality.face_size > 200


def test_small_face_in_a_reduced_decode_is_aligned_from_full_resolution(
    engine: FaceEngine, faces_dir: Path
) -> None:
    """In obama_and_biden (2000 px wide) faces span ~180 px, ~90 px at the detector's scale:
    alignment must use the full-resolution pixels, as a full decode would."""
    data = (faces_dir / "multi/obama_and_biden.jpg").read_bytes()
    settings = QualitySettings(multi_face=MultiFacePolicy.LARGEST)
    reduced = decode_for_analysis(data, settings)
    assert reduced.scale < 0.6
    full = decode_image(data, max_pixels=40_000_000, work_side=4000)
    assert full.scale == 1.0
    a = analyse_image(engine, reduced, settings)
    b = analyse_image(engine, full, settings)
    assert a.chosen.size * 1.5 < b.chosen.size  # detection did run on the reduced pixels
    assert float(a.embedding @ b.embedding) > 0.98
    assert abs(a.quality.blur - b.quality.blur) < 0.1 * b.quality.blur
    assert abs(a.quality.face_size - b.quality.face_size) <= 3


def test_no_face(engine: FaceEngine, faces_dir: Path) -> None:
    img = cv2.imread(str(faces_dir / "identities/obama/1.jpg"))
    bottom = img[int(img.shape[0] * 0.75) :, :]
    with pytest.raises(ItemError) as info:
        analyse_image(engine, _from_bgr(bottom), QualitySettings())
    assert info.value.code == ErrorCode.NO_FACE_DETECTED


def test_multiple_faces_rejected_by_default(engine: FaceEngine, faces_dir: Path) -> None:
    with pytest.raises(ItemError) as info:
        analyse_image(engine, _decoded(faces_dir / "multi/kit_with_rose.jpg"), QualitySettings())
    assert info.value.code == ErrorCode.MULTIPLE_FACES
    assert "2 faces" in info.value.message
    assert info.value.details["face_count"] == 2


def test_largest_policy_picks_the_largest_face(engine: FaceEngine, faces_dir: Path) -> None:
    settings = QualitySettings(multi_face=MultiFacePolicy.LARGEST)
    a = analyse_image(engine, _decoded(faces_dir / "multi/obama_and_biden.jpg"), settings)
    assert len(a.faces) >= 2
    assert a.chosen.area == max(f.area for f in a.faces)
    obama = _embedding(engine, faces_dir / "identities/obama/1.jpg")
    biden = _embedding(engine, faces_dir / "identities/biden/1.jpg")
    assert max(float(a.embedding @ obama), float(a.embedding @ biden)) > 0.45


def test_face_too_small(engine: FaceEngine, faces_dir: Path) -> None:
    img = cv2.imread(str(faces_dir / "probes/obama_small.jpg"))
    tiny = cv2.resize(img, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    with pytest.raises(ItemError) as info:
        analyse_image(engine, _from_bgr(tiny), QualitySettings())
    assert info.value.code == ErrorCode.FACE_TOO_SMALL
    assert "at least 48 px" in info.value.message


def test_blurred_face_is_low_quality(engine: FaceEngine, faces_dir: Path) -> None:
    img = cv2.imread(str(faces_dir / "identities/kit_harington/1.jpg"))
    blurred = cv2.GaussianBlur(img, (25, 25), 0)
    with pytest.raises(ItemError) as info:
        analyse_image(engine, _from_bgr(blurred), QualitySettings())
    assert info.value.code == ErrorCode.LOW_QUALITY
    assert "blurred" in info.value.message


def test_low_detection_score_is_low_quality(engine: FaceEngine, faces_dir: Path) -> None:
    """partial_face.jpg scores 0.74: under a stricter minimum score it must be refused."""
    image = _decoded(faces_dir / "edge/partial_face.jpg")
    with pytest.raises(ItemError) as info:
        analyse_image(engine, image, QualitySettings(min_det_score=0.8))
    assert info.value.code == ErrorCode.LOW_QUALITY
    assert "Detection score" in info.value.message
    assert analyse_image(engine, image, QualitySettings()).quality.det_score < 0.8
