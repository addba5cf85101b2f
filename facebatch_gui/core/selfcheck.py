"""A headless self-check: load a pack, detect and embed one image, report figures.

It proves, inside a frozen bundle too, that ONNX Runtime, OpenCV, InsightFace and the pack all
work together. The built-in image is `t1.jpg` from the installed `insightface` package (a group
photo InsightFace ships with its MIT-licensed library for its own demos; six faces). If it is
missing, a synthetic pattern is used instead: detection and embedding still run, but it holds no
face, and the report says so.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facebatch_gui import __version__
from facebatch_gui.core.errors import ItemError, ModelPackError


@dataclass(slots=True)
class SelfCheckResult:
    ok: bool
    image: str
    image_size: tuple[int, int]
    model_dir: str
    detector: str
    recognizer: str
    faces: int
    best_score: float | None
    embedding_dim: int
    embedding_norm: float
    load_s: float
    detect_s: float
    embed_s: float
    versions: dict[str, str] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def versions() -> dict[str, str]:
    found = {"facebatch": __version__, "python": platform.python_version()}
    for dist in ("onnxruntime", "opencv-python", "insightface", "numpy", "PySide6-Essentials"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    if "onnxruntime" not in found:  # a frozen bundle may lack the metadata; ask the module
        try:
            import onnxruntime

            found["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            pass
    if "opencv-python" not in found:
        from facebatch_gui.core.cvcompat import import_cv2

        found["opencv-python"] = import_cv2().__version__
    found["frozen"] = str(bool(getattr(sys, "frozen", False)))
    return found


def builtin_image() -> Path | None:
    """InsightFace's own sample photo, where the installed package (or the bundle) has it."""
    try:
        import insightface
    except ImportError:
        return None
    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    return path if path.is_file() else None


def synthetic_pattern(size: int = 480) -> np.ndarray:
    """A face-like drawing: enough to run every model, honestly not a detectable face."""
    from facebatch_gui.core.cvcompat import import_cv2

    cv2 = import_cv2()
    img = np.full((size, size, 3), 200, np.uint8)
    c = size // 2
    cv2.ellipse(img, (c, c), (size // 4, size // 3), 0, 0, 360, (120, 150, 190), -1)
    for dx in (-size // 10, size // 10):
        cv2.circle(img, (c + dx, c - size // 12), size // 30, (40, 40, 40), -1)
    cv2.ellipse(img, (c, c + size // 8), (size // 12, size // 40), 0, 0, 180, (60, 60, 140), -1)
    return img


def run_self_check(
    model_dir: str | Path | None, image: str | Path | None = None
) -> SelfCheckResult:
    """Load the pack, detect faces, embed the best one (or an aligned crop of the centre)."""
    from facebatch_gui.core.cvcompat import import_cv2
    from facebatch_gui.core.engine import ALIGNED_SIZE, FaceEngine
    from facebatch_gui.core.imaging import decode_image

    cv2 = import_cv2()
    t0 = time.perf_counter()
    engine = FaceEngine.load(model_dir, download=False)
    load_s = time.perf_counter() - t0
    require_face = True
    if image is not None:
        label = str(image)
        path = Path(image)
        if not path.is_file():
            raise ModelPackError(f"Self-check image {path} does not exist")
        try:
            bgr = decode_image(path.read_bytes(), max_pixels=40_000_000, work_side=1280).bgr
        except ItemError as exc:
            raise ModelPackError(f"Self-check image {path}: {exc.message}") from exc
    elif (builtin := builtin_image()) is not None:
        label = f"built-in {builtin.name} (from the insightface package)"
        bgr = cv2.imread(str(builtin))
    else:
        label, require_face = "built-in synthetic pattern (holds no real face)", False
        bgr = synthetic_pattern()
    t1 = time.perf_counter()
    faces = engine.detect(bgr)
    detect_s = time.perf_counter() - t1
    if faces:
        best = max(faces, key=lambda f: f.score)
        aligned = engine.align(bgr, best)
    else:
        h, w = bgr.shape[:2]
        side = min(h, w)
        crop = bgr[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]
        aligned = cv2.resize(crop, (ALIGNED_SIZE, ALIGNED_SIZE))
    t2 = time.perf_counter()
    raw = np.asarray(engine.recognizer.get_feat(aligned), dtype=np.float32).ravel()
    embed_s = time.perf_counter() - t2
    norm = float(np.linalg.norm(raw))
    ok = bool(np.isfinite(raw).all()) and norm > 0 and (bool(faces) or not require_face)
    message = (
        "self-check passed"
        if ok
        else f"self-check failed: no face found in {label}"
        if not faces
        else "self-check failed: the embedding is zero or not finite"
    )
    return SelfCheckResult(
        ok=ok,
        image=label,
        image_size=(int(bgr.shape[1]), int(bgr.shape[0])),
        model_dir=str(engine.model_dir),
        detector=engine.identity.detector_sha256[:12],
        recognizer=engine.identity.recognizer_sha256[:12],
        faces=len(faces),
        best_score=max((f.score for f in faces), default=None),
        embedding_dim=int(raw.shape[0]),
        embedding_norm=norm,
        load_s=load_s,
        detect_s=detect_s,
        embed_s=embed_s,
        versions=versions(),
        message=message,
    )
