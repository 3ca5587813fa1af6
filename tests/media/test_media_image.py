import struct
import zlib

import cv2
import numpy as np
import pytest

from masquerade.errors import MediaError, OutputError, UsageError
from masquerade.media.image import read_image, write_image
from masquerade.media.probe import probe_kind


def exif_with_orientation(value: int) -> bytes:
    """A minimal little-endian TIFF block with one IFD0 entry: Orientation = value."""
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<HHHIHH", 1, 0x0112, 3, 1, value, 0) + b"\0" * 4


def jpeg_with_orientation(image: np.ndarray, value: int) -> bytes:
    data = cv2.imencode(".jpg", image)[1].tobytes()
    payload = b"Exif\0\0" + exif_with_orientation(value)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + app1 + data[2:]


def png_with_orientation(image: np.ndarray, value: int) -> bytes:
    data = cv2.imencode(".png", image)[1].tobytes()
    body = exif_with_orientation(value)
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    ihdr_end = 8 + 8 + 13 + 4
    return data[:ihdr_end] + chunk + data[ihdr_end:]


def test_reads_a_photo_like_opencv(examples_dir, obama):
    loaded = read_image(examples_dir / "obama.jpg")
    assert loaded.format == "jpeg" and loaded.alpha is None
    np.testing.assert_array_equal(loaded.image, obama)


@pytest.mark.parametrize("value", range(1, 9))
def test_exif_orientation_matches_opencv(tmp_path, obama, value):
    crop = np.ascontiguousarray(obama[40:136, 60:124])  # not square, not symmetric
    path = tmp_path / "oriented.jpg"
    path.write_bytes(jpeg_with_orientation(crop, value))
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR)  # OpenCV applies EXIF orientation itself
    loaded = read_image(path)
    assert loaded.image.shape == expected.shape
    np.testing.assert_array_equal(loaded.image, expected)
    if value >= 5:
        assert loaded.image.shape[:2] == crop.shape[1::-1]


def test_exif_orientation_rotates_alpha_too(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:5, :5] = (0, 0, 255, 255)  # opaque red top-left, the rest transparent
    path = tmp_path / "turned.png"
    path.write_bytes(png_with_orientation(rgba, 6))  # 6: rotate 90° clockwise to display
    loaded = read_image(path)
    assert loaded.image.shape == (30, 20, 3) and loaded.alpha.shape == (30, 20)
    assert loaded.alpha[:5, -5:].min() == 255 and loaded.alpha[:, :-5].max() == 0
    assert loaded.image[0, -1].tolist() == [0, 0, 255]


def test_grey_png_becomes_bgr(tmp_path):
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (10, 1))
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), grey)
    loaded = read_image(path)
    assert loaded.image.shape == (10, 25, 3) and loaded.alpha is None
    for channel in range(3):
        np.testing.assert_array_equal(loaded.image[..., channel], grey)


def test_sixteen_bit_png_becomes_eight_bit(tmp_path):
    deep = np.full((8, 8, 3), 0x1234, np.uint16)
    deep[0, 0] = (0xFFFF, 0, 0x8000)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), deep)
    loaded = read_image(path)
    assert loaded.image.dtype == np.uint8
    assert loaded.image[0, 0].tolist() == [0xFF, 0, 0x80] and loaded.image[1, 1].tolist() == [0x12] * 3


@pytest.mark.parametrize("ext", [".png", ".webp"])
def test_alpha_survives_a_round_trip(tmp_path, astronaut, ext):
    image = np.ascontiguousarray(astronaut[:128, :96])
    alpha = np.zeros(image.shape[:2], np.uint8)
    alpha[16:112, 16:80] = 255
    alpha[60:70] = 128
    path = tmp_path / f"cut{ext}"
    write_image(path, image, alpha)
    loaded = read_image(path)
    assert loaded.format == ext[1:] and loaded.alpha is not None
    np.testing.assert_array_equal(loaded.alpha, alpha)  # WebP keeps alpha losslessly
    if ext == ".png":
        np.testing.assert_array_equal(loaded.image, image)
    else:
        opaque = alpha == 255
        assert np.abs(loaded.image[opaque].astype(int) - image[opaque]).mean() < 4


def test_jpeg_quality_and_dropped_alpha(tmp_path, obama):
    low, high = tmp_path / "low.jpg", tmp_path / "high.jpeg"
    write_image(low, obama, quality=40)
    write_image(high, obama, alpha=np.full(obama.shape[:2], 9, np.uint8), quality=95)
    assert low.stat().st_size < high.stat().st_size
    loaded = read_image(high)
    assert loaded.alpha is None and loaded.image.shape == obama.shape
    assert np.abs(loaded.image.astype(int) - obama).mean() < 3


def test_write_rejects_video_extension_and_missing_folder(tmp_path, obama):
    with pytest.raises(UsageError, match=r"\.mp4"):
        write_image(tmp_path / "out.mp4", obama)
    with pytest.raises(OutputError, match="does not exist"):
        write_image(tmp_path / "missing" / "out.png", obama)
    with pytest.raises(UsageError, match="quality"):
        write_image(tmp_path / "out.jpg", obama, quality=0)
    assert list(tmp_path.iterdir()) == []


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "note.jpg"
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(MediaError):
        probe_kind(path)
    with pytest.raises(MediaError, match="not a supported image"):
        read_image(path)


def test_truncated_png(tmp_path, astronaut):
    data = cv2.imencode(".png", astronaut)[1].tobytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match="damaged or truncated"):
        read_image(path)


def test_missing_and_empty_images(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        read_image(tmp_path / "nothing.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        read_image(tmp_path / "empty.png")
