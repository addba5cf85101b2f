"""The InsightFace engine: a detector and a recogniser loaded through InsightFace's own model_zoo.

Any folder of ONNX files that InsightFace can route works (an official pack such as `buffalo_l`, or
the offline pack in `../shared/models`). The engine is safe to call from several threads at once:
ONNX Runtime sessions are thread-safe, and each session runs single-threaded so that N inference
workers use N cores without the intra-op thread pools fighting over them.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facebatch_gui.core.cvcompat import import_cv2, scrub_cv2_qt_env
from facebatch_gui.core.errors import ModelPackError, PackMismatchError

cv2 = import_cv2()
# insightface's alignment calls a scikit-image API that warns on every face; the call still works.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.utils\.face_align")

DEFAULT_PACK = "buffalo_l"
MODEL_DIR_ENV = "FACEBATCH_MODEL_DIR"
ALIGNED_SIZE = 112


def insightface_root() -> Path:
    return Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser()


@dataclass(frozen=True, slots=True)
class PackIdentity:
    """What an embedding was made with. Only embeddings of one `space` can be compared."""

    name: str
    detector_sha256: str
    recognizer_sha256: str
    det_size: int
    embedding_dim: int

    @property
    def space(self) -> str:
        return f"{self.recognizer_sha256[:16]}/{self.embedding_dim}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PackIdentity:
        return cls(**json.loads(text))

    def check_comparable(self, other: PackIdentity) -> None:
        if self.space != other.space:
            raise PackMismatchError(
                f"Cannot compare faces enrolled with model pack '{other.name}' (recogniser "
                f"{other.recognizer_sha256[:12]}, {other.embedding_dim}-d) with pack "
                f"'{self.name}' (recogniser {self.recognizer_sha256[:12]}, "
                f"{self.embedding_dim}-d): embeddings of different packs are not comparable. "
                "Use the pack the store was enrolled with, or re-enroll those users."
            )


@dataclass(frozen=True, slots=True)
class DetectedFace:
    bbox: np.ndarray  # x1, y1, x2, y2 in the decoded image's pixels
    kps: np.ndarray  # 5 x 2 landmarks
    score: float

    @property
    def size(self) -> float:
        return float(min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def area(self) -> float:
        return float((self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1]))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model_dir(model_dir: str | os.PathLike[str] | None, *, download: bool = True) -> Path:
    """Explicit folder, else FACEBATCH_MODEL_DIR, else InsightFace's `buffalo_l` (downloaded:
    `facebatch models download buffalo_l` does the same with a progress bar)."""
    chosen = model_dir or os.environ.get(MODEL_DIR_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_dir():
            raise ModelPackError(f"Model folder {path} does not exist")
        return path
    path = insightface_root() / "models" / DEFAULT_PACK
    if path.is_dir() and any(path.glob("*.onnx")):
        return path
    if download:  # checked against the catalog's sha256 and installed atomically (core.packs)
        from facebatch_gui.core.packs import PackManager

        try:
            return PackManager(path.parent).download(DEFAULT_PACK)
        except ModelPackError as exc:
            reason = f"downloading it failed ({exc})"
    else:
        reason = "downloads are turned off"
    raise ModelPackError(
        f"No face model pack found: {path} is missing and {reason}. On a machine without "
        f"internet, copy an InsightFace pack folder (a folder of .onnx files, e.g. {DEFAULT_PACK}) "
        f"there or import a pack zip with `facebatch models import PATH`, or point to one with "
        f"--model-dir DIR or the {MODEL_DIR_ENV} environment variable."
    )


class FaceEngine:
    def __init__(self, model_dir: Path, *, det_size: int = 640, det_threshold: float = 0.5) -> None:
        import onnxruntime
        from insightface.model_zoo import model_zoo

        scrub_cv2_qt_env()
        onnxruntime.set_default_logger_severity(3)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        files = sorted(model_dir.glob("*.onnx"))
        if not files:
            raise ModelPackError(f"Model folder {model_dir} holds no .onnx files")
        found: dict[str, tuple[Any, Path]] = {}  # insightface's models are untyped
        for path in files:
            try:
                model = model_zoo.get_model(
                    str(path), providers=["CPUExecutionProvider"], sess_options=options
                )
            except Exception as exc:  # a broken file must name itself
                raise ModelPackError(f"Cannot load model {path.name}: {exc}") from exc
            task = getattr(model, "taskname", None)
            if task in ("detection", "recognition") and task not in found:
                found[task] = (model, path)
        missing = {"detection", "recognition"} - found.keys()
        if missing:
            raise ModelPackError(
                f"Model folder {model_dir} lacks a {' and a '.join(sorted(missing))} model "
                "that InsightFace can route"
            )
        self.detector, det_path = found["detection"]
        self.recognizer, rec_path = found["recognition"]
        self.det_size = det_size
        self.detector.prepare(-1, input_size=(det_size, det_size), det_thresh=det_threshold)
        self.recognizer.prepare(-1)
        dim = int(self.recognizer.output_shape[1])
        self.identity = PackIdentity(
            name=model_dir.name,
            detector_sha256=_sha256(det_path),
            recognizer_sha256=_sha256(rec_path),
            det_size=det_size,
            embedding_dim=dim,
        )
        self.model_dir = model_dir

    @classmethod
    def load(
        cls,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        det_size: int = 640,
        det_threshold: float = 0.5,
        download: bool = True,
    ) -> FaceEngine:
        return cls(
            resolve_model_dir(model_dir, download=download),
            det_size=det_size,
            det_threshold=det_threshold,
        )

    def detect(self, bgr: np.ndarray) -> list[DetectedFace]:
        boxes, kpss = self.detector.detect(bgr, input_size=(self.det_size, self.det_size))
        if kpss is None:
            raise ModelPackError("The detector gives no landmarks; alignment needs a *_kps model")
        return [
            DetectedFace(bbox=boxes[i, :4].copy(), kps=kpss[i].copy(), score=float(boxes[i, 4]))
            for i in range(boxes.shape[0])
        ]

    def align(self, bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        from insightface.utils import face_align

        return face_align.norm_crop(bgr, landmark=face.kps, image_size=ALIGNED_SIZE)

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        """L2-normalised embedding, so that a dot product is the cosine similarity."""
        feat = np.asarray(self.recognizer.get_feat(aligned), dtype=np.float32).ravel()
        norm = float(np.linalg.norm(feat))
        if norm == 0.0:
            raise ValueError("The recogniser returned a zero vector")
        return feat / norm


def blur_score(aligned: np.ndarray) -> float:
    """Variance of the Laplacian: low for blurred or heavily upscaled faces."""
    gray = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())
