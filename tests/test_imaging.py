"""Decoding real photos (and variants derived from them in memory) into BGR for the detector."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebatch_gui.core.cvcompat import import_cv2
from facebatch_gui.core.errors import ErrorCode, ItemError
from facebatch_gui.core.imaging import DecodedImage, decode_image, encode_jpeg

cv2 = import_cv2()

MAX_PIXELS = 40_000_000
PORTRAIT = "identities/obama/2.jpg"  # 626 x 1200, one face
LANDSCAPE = "probes/obama.jpg"  # 1480 x 832, one face
LARGE = "probes/obama_large.jpg"  # 1434 x 2333, one face


def _decode(data: bytes, *, work_side: int = 4000, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    return decode_image(data, max_pixels=max_pixels, work_side=work_side)


def _fail(data: bytes, **kwargs: int) -> ItemError:
    with pytest.raises(ItemError) as info:
        _decode(data, **kwargs)
    return info.value


def _open(faces_dir: Path, rel: str) -> Image.Image:
    im = Image.open(faces_dir / rel)
    im.load()
    return im


def _save(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def _bgr(im: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _is_upright(kps: np.ndarray) -> bool:
    """Eyes side by side (more apart in x than in y) and above the mouth corners."""
    left_eye, right_eye, _nose, left_mouth, right_mouth = kps
    eye_dx, eye_dy = abs(right_eye[0] - left_eye[0]), abs(right_eye[1] - left_eye[1])
    eyes_y = (left_eye[1] + right_eye[1]) / 2
    mouth_y = (left_mouth[1] + right_mouth[1]) / 2
    return bool(eye_dx > 2 * eye_dy and mouth_y > eyes_y)


def _rotated_with_exif(upright: Image.Image, orientation: int) -> Image.Image:
    """Pixels stored on their side, as a phone writes them, with the tag that turns them back."""
    # Orientation 6 means "turn 90° clockwise to view", so store the picture turned anticlockwise.
    store = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    return upright.transpose(store)


def _jpeg_with_orientation(upright: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = _rotated_with_exif(upright, orientation)
    return _save(stored, "JPEG", quality=92, exif=exif.tobytes())


# --- plain JPEGs and reduction -------------------------------------------------------------------


def test_real_jpeg_decodes_at_full_size(faces_dir: Path) -> None:
    data = (faces_dir / LANDSCAPE).read_bytes()
    decoded = _decode(data, work_side=2000)
    assert decoded.format == "JPEG"
    assert (decoded.width, decoded.height) == (1480, 832)
    assert decoded.bgr.shape == (832, 1480, 3)
    assert decoded.bgr.dtype == np.uint8
    assert decoded.bgr.flags["C_CONTIGUOUS"]
    assert decoded.scale == 1.0
    assert decoded.nbytes == 832 * 1480 * 3
    # Same pixels as OpenCV's own decoder, in the same (BGR) channel order.
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert _mean_abs_diff(decoded.bgr, reference) < 2.0


def test_large_jpeg_is_reduced_and_scale_maps_back(faces_dir: Path) -> None:
    data = (faces_dir / LARGE).read_bytes()
    full = _decode(data, work_side=4000)
    assert full.bgr.shape == (2333, 1434, 3)
    assert full.scale == 1.0

    decoded = _decode(data, work_side=1000)
    assert (decoded.width, decoded.height) == (1434, 2333)  # the source's size
    # Halved inside the JPEG decoder: at least work_side, at most twice it.
    assert max(decoded.bgr.shape[:2]) == 1167
    h, w = decoded.bgr.shape[:2]
    # Both sides map back to within rounding (half a pixel of the reduced image).
    assert decoded.width * decoded.scale == pytest.approx(w, abs=0.5)
    assert decoded.height * decoded.scale == pytest.approx(h, abs=0.5)
    # Reduced, not cropped or stretched: it matches a plain resize of the full decode.
    shrunk = cv2.resize(full.bgr, (w, h), interpolation=cv2.INTER_AREA)
    assert _mean_abs_diff(decoded.bgr, shrunk) < 4.0


def test_png_larger_than_twice_work_side_is_reduced(faces_dir: Path) -> None:
    data = (faces_dir / "edge" / "rgba_32bit.png").read_bytes()
    assert _decode(data, work_side=600).bgr.shape == (1200, 626, 3)  # within twice: kept
    decoded = _decode(data, work_side=300)
    assert decoded.format == "PNG"
    assert (decoded.width, decoded.height) == (626, 1200)
    assert decoded.bgr.shape == (600, 313, 3)
    assert decoded.scale == pytest.approx(313 / 626)


@pytest.mark.parametrize("tall", [True, False])
def test_scale_of_a_narrow_strip_maps_both_sides(faces_dir: Path, tall: bool) -> None:
    """On a 71-pixel-wide strip one pixel of rounding is 1.4 %; scale must follow the long side."""
    photo = _open(faces_dir, LARGE)  # 1434 x 2333
    strip = photo.crop((700, 0, 771, 2333))
    if not tall:
        strip = strip.transpose(Image.Transpose.ROTATE_90)
    decoded = _decode(_save(strip, "PNG"), work_side=500)
    h, w = decoded.bgr.shape[:2]
    assert max(h, w) == 1000
    assert decoded.width * decoded.scale == pytest.approx(w, abs=0.5)
    assert decoded.height * decoded.scale == pytest.approx(h, abs=0.5)


@pytest.mark.models
def test_boxes_on_the_reduced_image_map_back_to_source_pixels(faces_dir: Path, engine) -> None:
    data = (faces_dir / LARGE).read_bytes()
    full = _decode(data, work_side=4000)
    small = _decode(data, work_side=1000)
    [face_full] = engine.detect(full.bgr)
    [face_small] = engine.detect(small.bgr)
    mapped = face_small.bbox / small.scale
    face_side = face_full.size
    assert np.abs(mapped - face_full.bbox).max() < 0.1 * face_side


# --- EXIF orientation ----------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_comes_out_upright(faces_dir: Path, orientation: int) -> None:
    upright = _open(faces_dir, PORTRAIT)
    data = _jpeg_with_orientation(upright, orientation)
    assert Image.open(io.BytesIO(data)).size == (1200, 626)  # stored on its side

    decoded = _decode(data, work_side=2000)
    assert decoded.bgr.shape == (1200, 626, 3)
    assert (decoded.width, decoded.height) == (626, 1200)
    assert decoded.scale == 1.0
    # Turned the right way, not just into the right shape: close to the upright original.
    assert _mean_abs_diff(decoded.bgr, _bgr(upright)) < 4.0
    assert _mean_abs_diff(decoded.bgr, _bgr(upright.transpose(Image.Transpose.ROTATE_180))) > 20


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_with_reduction(faces_dir: Path, orientation: int) -> None:
    """Draft decoding of big JPEGs happens before the turn; sizes and scale must still agree."""
    upright = _open(faces_dir, LARGE)
    data = _jpeg_with_orientation(upright, orientation)
    decoded = _decode(data, work_side=1000)
    assert (decoded.width, decoded.height) == (1434, 2333)
    h, w = decoded.bgr.shape[:2]
    assert h == 1167
    assert h > w
    assert decoded.width * decoded.scale == pytest.approx(w, abs=0.5)
    assert decoded.height * decoded.scale == pytest.approx(h, abs=0.5)
    reference = cv2.resize(_bgr(upright), (w, h), interpolation=cv2.INTER_AREA)
    assert _mean_abs_diff(decoded.bgr, reference) < 5.0


@pytest.mark.models
@pytest.mark.parametrize("orientation", [6, 8])
def test_face_on_exif_rotated_photo_is_found_upright(
    faces_dir: Path, engine, orientation: int
) -> None:
    """SCRFD still finds some sideways faces, so compare the landmarks' layout, not the count."""
    upright = _open(faces_dir, PORTRAIT)
    data = _jpeg_with_orientation(upright, orientation)
    decoded = _decode(data, work_side=2000)
    faces = engine.detect(decoded.bgr)
    assert len(faces) == 1
    assert _is_upright(faces[0].kps)

    raw = _bgr(_rotated_with_exif(upright, orientation))
    raw_faces = engine.detect(raw)
    assert not any(_is_upright(f.kps) for f in raw_faces)
    assert all(f.score < faces[0].score for f in raw_faces)


# --- colour modes --------------------------------------------------------------------------------


def test_rgba_png_becomes_bgr(faces_dir: Path) -> None:
    """This file is fully opaque, so its colours must come through unchanged."""
    source = _open(faces_dir, "edge/rgba_32bit.png")
    assert source.mode == "RGBA"
    decoded = _decode((faces_dir / "edge" / "rgba_32bit.png").read_bytes())
    assert decoded.bgr.shape == (1200, 626, 3)
    np.testing.assert_array_equal(decoded.bgr, np.asarray(source)[:, :, 2::-1])


def test_transparent_areas_become_white(faces_dir: Path) -> None:
    source = _open(faces_dir, "edge/rgba_32bit.png")
    rgba = np.array(source)
    rgba[:, :100, 3] = 0  # fully transparent strip
    rgba[:, 100:200, 3] = 128  # half transparent strip
    assert rgba[:, :200, :3].mean() < 200  # the photo there is not white already
    decoded = _decode(_save(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert decoded.bgr.shape == (1200, 626, 3)
    assert (decoded.bgr[:, :100] == 255).all()
    expected = (rgba[:, 100:200, 2::-1].astype(np.float32) * 128 + 255 * 127) / 255
    assert np.abs(decoded.bgr[:, 100:200].astype(np.float32) - expected).max() <= 2
    np.testing.assert_array_equal(decoded.bgr[:, 200:], rgba[:, 200:, 2::-1])


def test_gray_with_alpha_png(faces_dir: Path) -> None:
    gray = _open(faces_dir, LANDSCAPE).convert("L")
    alpha = Image.new("L", gray.size, 255)
    alpha.paste(0, (0, 0, 50, gray.height))
    decoded = _decode(_save(Image.merge("LA", (gray, alpha)), "PNG"))
    assert decoded.bgr.shape == (832, 1480, 3)
    assert (decoded.bgr[:, :50] == 255).all()
    np.testing.assert_array_equal(decoded.bgr[:, 50:, 0], np.asarray(gray)[:, 50:])


def test_palette_png(faces_dir: Path) -> None:
    palette = _open(faces_dir, LANDSCAPE).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    data = _save(palette, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "P"
    decoded = _decode(data)
    assert decoded.bgr.shape == (832, 1480, 3)
    np.testing.assert_array_equal(decoded.bgr, _bgr(palette))


def test_palette_png_with_transparent_index(faces_dir: Path) -> None:
    palette = _open(faces_dir, LANDSCAPE).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    index = int(np.asarray(palette)[0, 0])
    mask = np.asarray(palette) == index
    assert 0 < mask.mean() < 0.5
    data = _save(palette, "PNG", transparency=index)
    decoded = _decode(data)
    assert (decoded.bgr[mask] == 255).all()
    np.testing.assert_array_equal(decoded.bgr[~mask], _bgr(palette)[~mask])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_grayscale_becomes_three_equal_channels(faces_dir: Path, fmt: str) -> None:
    gray = _open(faces_dir, LANDSCAPE).convert("L")
    data = _save(gray, fmt)
    assert Image.open(io.BytesIO(data)).mode == "L"
    decoded = _decode(data)
    assert decoded.bgr.shape == (832, 1480, 3)
    b, g, r = (decoded.bgr[:, :, i] for i in range(3))
    np.testing.assert_array_equal(b, g)
    np.testing.assert_array_equal(g, r)
    assert _mean_abs_diff(b, np.asarray(gray)) < 2.0


def test_cmyk_jpeg(faces_dir: Path) -> None:
    """Print workflows save CMYK JPEGs; colours must survive the round trip."""
    rgb = _open(faces_dir, LANDSCAPE)
    data = _save(rgb.convert("CMYK"), "JPEG", quality=95)
    decoded = _decode(data)
    assert decoded.bgr.shape == (832, 1480, 3)
    assert _mean_abs_diff(decoded.bgr, _bgr(rgb)) < 4.0


def test_16bit_grayscale_png(faces_dir: Path) -> None:
    gray8 = np.asarray(_open(faces_dir, LANDSCAPE).convert("L"))
    gray16 = gray8.astype(np.uint16) * 257  # full 16-bit range, same picture
    ok, buf = cv2.imencode(".png", gray16)
    assert ok
    data = buf.tobytes()
    assert Image.open(io.BytesIO(data)).mode in ("I;16", "I;16B", "I")
    decoded = _decode(data)
    assert decoded.bgr.shape == (832, 1480, 3)
    assert decoded.bgr.dtype == np.uint8
    np.testing.assert_array_equal(decoded.bgr[:, :, 0], gray8)
    np.testing.assert_array_equal(decoded.bgr[:, :, 2], gray8)
    assert abs(float(decoded.bgr.mean()) - float(gray8.mean())) < 1.0
    assert 30 < decoded.bgr.mean() < 225


def test_16bit_colour_png(faces_dir: Path) -> None:
    bgr8 = _bgr(_open(faces_dir, LANDSCAPE))
    ok, buf = cv2.imencode(".png", bgr8.astype(np.uint16) * 257)
    assert ok
    decoded = _decode(buf.tobytes())
    assert decoded.bgr.shape == (832, 1480, 3)
    assert decoded.bgr.dtype == np.uint8
    assert _mean_abs_diff(decoded.bgr, bgr8) < 1.0
    assert 30 < decoded.bgr.mean() < 225


def test_webp_and_bmp(faces_dir: Path) -> None:
    rgb = _open(faces_dir, "probes/obama_240p.jpg")
    for fmt, tolerance in (("BMP", 0.0), ("WEBP", 6.0)):
        decoded = _decode(_save(rgb, fmt))
        assert decoded.format == fmt
        assert decoded.bgr.shape == (240, 427, 3)
        assert _mean_abs_diff(decoded.bgr, _bgr(rgb)) <= tolerance


# --- what is not an image ------------------------------------------------------------------------


def test_truncated_jpeg_is_not_an_image(faces_dir: Path) -> None:
    data = (faces_dir / LANDSCAPE).read_bytes()
    err = _fail(data[: len(data) // 2])
    assert err.code == ErrorCode.NOT_AN_IMAGE
    assert "truncated" in err.message


def test_truncated_large_jpeg_with_draft_is_not_an_image(faces_dir: Path) -> None:
    data = (faces_dir / LARGE).read_bytes()
    err = _fail(data[: len(data) // 2], work_side=500)
    assert err.code == ErrorCode.NOT_AN_IMAGE


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>Not found</body></html>",
        b"  <html><head><title>Login</title></head></html>",
        b'{"error": "not found"}',
    ],
)
def test_text_and_html_are_not_images(body: bytes) -> None:
    err = _fail(body)
    assert err.code == ErrorCode.NOT_AN_IMAGE
    assert "looks like text or HTML" in err.message
    assert f"{len(body)} bytes" in err.message


def test_binary_garbage_names_its_first_bytes() -> None:
    err = _fail(bytes(range(1, 200)))
    assert err.code == ErrorCode.NOT_AN_IMAGE
    assert "01 02 03 04" in err.message


def test_empty_bytes_are_not_an_image() -> None:
    err = _fail(b"")
    assert err.code == ErrorCode.NOT_AN_IMAGE
    assert "0 bytes" in err.message


def test_pixel_limit(faces_dir: Path) -> None:
    data = (faces_dir / LANDSCAPE).read_bytes()
    pixels = 1480 * 832
    err = _fail(data, max_pixels=pixels - 1)
    assert err.code == ErrorCode.IMAGE_TOO_LARGE
    assert "1480x832" in err.message
    assert _decode(data, max_pixels=pixels).bgr.shape == (832, 1480, 3)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("max_pixels", [MAX_PIXELS, 10**12])
def test_huge_declared_size_is_refused_without_decoding(max_pixels: int) -> None:
    """A few hundred bytes claiming 50000x50000: refused from the header (Pillow's bomb check
    catches it even when our own limit is set absurdly high)."""
    data = _png_header_only(50_000, 50_000)
    assert len(data) < 200
    err = _fail(data, max_pixels=max_pixels)
    assert err.code == ErrorCode.IMAGE_TOO_LARGE


def test_encode_jpeg_round_trip(faces_dir: Path) -> None:
    decoded = _decode((faces_dir / "probes" / "obama_240p.jpg").read_bytes())
    again = _decode(encode_jpeg(decoded.bgr, quality=95))
    assert again.bgr.shape == decoded.bgr.shape
    assert _mean_abs_diff(again.bgr, decoded.bgr) < 3.0


def test_warm_up_loads_the_decoders_a_batch_needs(faces_dir: Path) -> None:
    """Run in a fresh interpreter: after warm_up, decoding a real photo imports nothing new."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from facebatch_gui.core.imaging import decode_image, warm_up\n"
        "warm_up()\n"
        "before = set(sys.modules)\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "decode_image(data, max_pixels=40_000_000, work_side=640)\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    photo = faces_dir / "identities" / "obama" / "1.jpg"
    out = subprocess.run(
        [sys.executable, "-c", code, str(photo)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
