"""The per-user image steps: detect, apply the multi-face policy, check quality, align, embed.

Shared by registration, the dry-run `validate` and the GUI's preview, so that what an operator sees
is exactly what a batch would do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebatch_gui.core.engine import ALIGNED_SIZE, DetectedFace, FaceEngine, blur_score
from facebatch_gui.core.errors import ErrorCode, ItemError
from facebatch_gui.core.imaging import DecodedImage, decode_image, encode_jpeg
from facebatch_gui.core.records import QualityFigures
from facebatch_gui.core.settings import MultiFacePolicy, QualitySettings


@dataclass(slots=True)
class FaceAnalysis:
    faces: list[DetectedFace]  # every detection, in the decoded image's pixels
    chosen: DetectedFace
    aligned: np.ndarray
    embedding: np.ndarray
    quality: QualityFigures
    bbox: list[float]  # the chosen face in source pixels

    def thumbnail_jpeg(self) -> bytes:
        return encode_jpeg(self.aligned, quality=85)


def decode_for_analysis(data: bytes, settings: QualitySettings) -> DecodedImage:
    """Decode at the detector's resolution (it sees at most det_size pixels: more is waste)."""
    return decode_image(data, max_pixels=settings.max_pixels, work_side=settings.det_size)


def _source_box(face: DetectedFace, scale: float) -> list[float]:
    return [round(float(v) / scale, 1) for v in face.bbox]


def choose_face(
    faces: list[DetectedFace], image: DecodedImage, settings: QualitySettings
) -> DetectedFace:
    if not faces:
        raise ItemError(
            ErrorCode.NO_FACE_DETECTED,
            f"No face found in the {image.width}x{image.height} image "
            f"(detector threshold {settings.det_threshold:.2f})",
        )
    # Faces far below the size limit are background people, not a second subject.
    significant = [f for f in faces if f.size / image.scale >= settings.min_face_size]
    if len(significant) > 1 and settings.multi_face == MultiFacePolicy.REJECT:
        boxes = "; ".join(
            f"{[round(v) for v in _source_box(f, image.scale)]} score {f.score:.2f}"
            for f in significant
        )
        raise ItemError(
            ErrorCode.MULTIPLE_FACES,
            f"{len(significant)} faces found, and the policy is to reject photos with more than "
            f"one: {boxes}",
            face_count=len(significant),
        )
    return max(significant or faces, key=lambda f: f.area)


def _alignment_source(
    image: DecodedImage, face: DetectedFace, settings: QualitySettings
) -> tuple[np.ndarray, DetectedFace]:
    """Detection ran on a reduced decode; a face that came out smaller than the recogniser's input
    is aligned from a larger decode, so that its embedding and blur figure are not made from
    upscaled pixels. Avatars rarely need this: their face fills the picture."""
    if face.size >= ALIGNED_SIZE or image.scale >= 1.0 or image.source is None:
        return image.bgr, face
    wanted = min(1.0, image.scale * ALIGNED_SIZE / face.size)
    larger = image.at_scale(wanted, max_pixels=settings.max_pixels)
    ratio = larger.scale / image.scale
    if ratio <= 1.0:
        return image.bgr, face
    return larger.bgr, DetectedFace(bbox=face.bbox * ratio, kps=face.kps * ratio, score=face.score)


def analyse_image(
    engine: FaceEngine, image: DecodedImage, settings: QualitySettings
) -> FaceAnalysis:
    faces = engine.detect(image.bgr)
    chosen = choose_face(faces, image, settings)
    size = chosen.size / image.scale
    if size < settings.min_face_size:
        raise ItemError(
            ErrorCode.FACE_TOO_SMALL,
            f"The face is {size:.0f} px across; at least {settings.min_face_size} px is needed",
            face_count=len(faces),
        )
    if chosen.score < settings.min_det_score:
        raise ItemError(
            ErrorCode.LOW_QUALITY,
            f"Detection score {chosen.score:.2f} is under {settings.min_det_score:.2f} "
            "(face turned away, covered or badly lit)",
            face_count=len(faces),
        )
    aligned = engine.align(*_alignment_source(image, chosen, settings))
    blur = blur_score(aligned)
    if blur < settings.min_blur:
        raise ItemError(
            ErrorCode.LOW_QUALITY,
            f"The face is blurred: sharpness {blur:.1f} is under {settings.min_blur:.1f}",
            face_count=len(faces),
        )
    return FaceAnalysis(
        faces=faces,
        chosen=chosen,
        aligned=aligned,
        embedding=engine.embed(aligned),
        quality=QualityFigures(face_size=round(size), blur=round(blur, 1), det_score=chosen.score),
        bbox=_source_box(chosen, image.scale),
    )
