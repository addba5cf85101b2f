"""Turn downloaded bytes into a BGR image the detector can use, whatever avatars throw at us.

Pillow decodes (it reads EXIF orientation, palettes, alpha, grayscale and 16-bit PNGs, and for JPEG
can decode at 1/2, 1/4 or 1/8 scale for free). Huge photos are reduced to what detection and
alignment need, and `scale` maps boxes back to the source's pixels, so operators see real
coordinates.
"""

from __future__ import annotations

import io
import math
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
    source: bytes | None = None  # kept so a small face can be re-read at full resolution

    def at_scale(self, scale: float, *, max_pixels: int) -> DecodedImage:
        """The same picture decoded again, larger, e.g. to align a face that came out small."""
        if self.source is None or scale <= self.scale:
            return self
        side = max(1, math.ceil(max(self.width, self.height) * min(1.0, scale)))
        return decode_image(self.source, max_pixels=max_pixels, work_side=side)

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


_JPEG_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


def _orient(bgr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) the way Pillow's `exif_transpose` does."""
    if orientation == 2:
        return cv2.flip(bgr, 1)
    if orientation == 3:
        return cv2.rotate(bgr, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(bgr, 0)
    if orientation == 5:
        return cv2.transpose(bgr)
    if orientation == 6:
        return cv2.rotate(bgr, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(bgr), -1)
    if orientation == 8:
        return cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return bgr


def _decode_jpeg_fast(
    data: bytes, longest: int, work_side: int, orientation: int
) -> np.ndarray | None:
    """libjpeg-turbo through OpenCV, scaled by 1/2, 1/4 or 1/8 inside the DCT where that still
    leaves `work_side` pixels: several times cheaper than a full decode and a resize. Only for
    files that end properly: a truncated JPEG goes to Pillow, which refuses it with a reason."""
    if data.rstrip(b"\0\r\n ")[-2:] != b"\xff\xd9":
        return None
    flag = cv2.IMREAD_COLOR
    for factor, reduced in _JPEG_REDUCED:
        if longest / factor >= work_side:
            flag = reduced
            break
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    return None if bgr is None else _orient(bgr, orientation)


def decode_image(data: bytes, *, max_pixels: int, work_side: int) -> DecodedImage:
    """Decode and orient; big images come out with a longer side of `work_side` to twice that."""
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
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        bgr = None
        if fmt == "JPEG":
            bgr = _decode_jpeg_fast(data, max(width, height), work_side, orientation)
        if bgr is None:
            if fmt == "JPEG" and max(width, height) > work_side:
                factor = work_side / max(width, height)
                im.draft("RGB", (max(1, int(width * factor)), max(1, int(height * factor))))
            im.load()
            bgr = cv2.cvtColor(_to_rgb(ImageOps.exif_transpose(im)), cv2.COLOR_RGB2BGR)
    except Image.DecompressionBombError as exc:
        raise ItemError(ErrorCode.IMAGE_TOO_LARGE, f"Image has too many pixels: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ItemError(
            ErrorCode.NOT_AN_IMAGE, f"{fmt} image is damaged or truncated: {exc}"
        ) from exc
    # EXIF orientations 5-8 turn the picture a quarter: the source's sides swap.
    oriented_w, oriented_h = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    if max(bgr.shape[:2]) > 2 * work_side:
        # Sizes from the source's, not the decoded one's, so that rounding happens once.
        factor = 2 * work_side / max(oriented_w, oriented_h)
        size = (max(1, round(oriented_w * factor)), max(1, round(oriented_h * factor)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    # The longer side carries the least rounding error; the shorter one can be a pixel off, which
    # on a narrow image would skew every box mapped back with `scale`.
    scale = bgr.shape[1] / oriented_w if oriented_w >= oriented_h else bgr.shape[0] / oriented_h
    return DecodedImage(
        bgr=bgr, width=oriented_w, height=oriented_h, scale=scale, format=fmt, source=data
    )


def encode_jpeg(bgr: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def warm_up() -> None:
    """Decode a tiny JPEG and PNG once, so Pillow's format plugins and the decode paths are
    loaded before a batch: imported lazily by the first decode of a batch, they hold the GIL for
    tens of milliseconds while the GUI thread waits."""
    from PIL import TiffImagePlugin  # noqa: F401 - EXIF parsing of real photos needs it

    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    for data in (encode_jpeg(pixels), png.getvalue()):
        decode_image(data, max_pixels=1_000_000, work_side=16)
