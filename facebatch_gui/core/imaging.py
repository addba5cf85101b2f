"""Turn downloaded bytes into a BGR image the detector can use, whatever avatars throw at us.

Pillow decodes (it reads EXIF orientation, palettes, alpha, grayscale and 16-bit PNGs, and for JPEG
can decode at 1/2, 1/4 or 1/8 scale for free). Huge photos are reduced to what detection and
alignment need, and `scale` maps boxes back to the source's pixels, so operators see real
coordinates.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facebatch_gui.core.cvcompat import import_cv2
from facebatch_gui.core.errors import ErrorCode, ItemError

cv2 = import_cv2()


@dataclass(frozen=True, slots=True)
class DecodedImage:
    bgr: np.ndarray
    width: int
    height: int
    scale: float
    format: str

    @property
    def nbytes(self) -> int:
        return int(self.bgr.nbytes)


def _describe_start(data: bytes) -> str:
    head = data[:16]
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"{", b"[")):
        return f"it looks like text or HTML ({head[:12]!r}...)"
    return f"its first bytes are {head[:8].hex(' ')}"


def _to_rgb(im: Image.Image) -> np.ndarray:
    """8-bit RGB from any mode; transparent pixels become white, as avatars are shown on white."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        if arr.dtype != np.uint16:
            arr = np.clip(arr, 0, 65535)
        gray = (arr.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        span = float(arr.max() - arr.min()) or 1.0
        gray = ((arr - arr.min()) * (255.0 / span)).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return np.asarray(im.convert("RGB"))


def decode_image(data: bytes, *, max_pixels: int, work_side: int) -> DecodedImage:
    """Decode, orient and reduce so that the longer side is at most `work_side` pixels."""
    if not data:
        raise ItemError(ErrorCode.NOT_AN_IMAGE, "The download was empty (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ItemError(ErrorCode.IMAGE_TOO_LARGE, f"Image has too many pixels: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ItemError(
            ErrorCode.NOT_AN_IMAGE,
            f"Not an image Pillow can read ({len(data)} bytes; {_describe_start(data)})",
        ) from exc
    width, height = im.size
    if width * height > max_pixels:
        raise ItemError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"Image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}",
        )
    fmt = im.format or "unknown"
    try:
        orientation = im.getexif().get(0x0112, 1)
        if fmt == "JPEG" and max(width, height) > work_side:
            factor = work_side / max(width, height)
            im.draft("RGB", (max(1, int(width * factor)), max(1, int(height * factor))))
        im.load()
        im = ImageOps.exif_transpose(im)
        rgb = _to_rgb(im)
    except Image.DecompressionBombError as exc:
        raise ItemError(ErrorCode.IMAGE_TOO_LARGE, f"Image has too many pixels: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ItemError(
            ErrorCode.NOT_AN_IMAGE, f"{fmt} image is damaged or truncated: {exc}"
        ) from exc
    # EXIF orientations 5-8 turn the picture a quarter: the source's sides swap.
    oriented_w, oriented_h = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    if max(bgr.shape[:2]) > work_side:
        # Sizes from the source's, not the draft's, so that rounding happens once.
        factor = work_side / max(oriented_w, oriented_h)
        size = (max(1, round(oriented_w * factor)), max(1, round(oriented_h * factor)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    # The longer side carries the least rounding error; the shorter one can be a pixel off, which
    # on a narrow image would skew every box mapped back with `scale`.
    scale = bgr.shape[1] / oriented_w if oriented_w >= oriented_h else bgr.shape[0] / oriented_h
    return DecodedImage(bgr=bgr, width=oriented_w, height=oriented_h, scale=scale, format=fmt)


def encode_jpeg(bgr: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
