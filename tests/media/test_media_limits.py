"""Hostile pictures: sizes claimed in headers, damaged files that make C libraries talk, animations."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import make_clip
from PIL import Image as PILImage
from PIL import TiffImagePlugin

from masquerade.cli.main import main
from masquerade.errors import MediaError
from masquerade.media.image import read_image
from masquerade.media.probe import probe_kind
from masquerade.media.reader import VideoReader


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` (valid CRCs, a few rows of data)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * min(width, 64)) * 4)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 4)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        (tag,) = struct.unpack_from("<H", data, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            struct.pack_into("<HHII", data, entry, tag, 4, 1, value)  # LONG
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    lossless = [cv2.IMWRITE_WEBP_QUALITY, 101]
    data = bytearray(cv2.imencode(".webp", np.zeros((8, 8, 3), np.uint8), lossless)[1])
    assert data[12:16] == b"VP8L"
    bits = (width - 1) | (height - 1) << 14 | (int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1))
    data[21:25] = bits.to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize(("make", "ext"), [(png_claiming, "png"), (jpeg_claiming, "jpg"),
                                           (bmp_claiming, "bmp"), (tiff_claiming, "tiff"),
                                           (webp_claiming, "webp")])
@pytest.mark.parametrize("side", [10_000, 40_000])
def test_a_header_claiming_a_huge_picture_is_refused_before_decoding(tmp_path, make, ext, side):
    if ext == "webp" and side > 16_384:
        side = 16_383  # VP8L cannot say more
    path = tmp_path / f"huge.{ext}"
    path.write_bytes(make(side, side))
    started = time.perf_counter()
    with pytest.raises(MediaError, match=r"MP\)?, above the 50 MP limit for images; masquerade refuses it"):
        read_image(path)
    assert time.perf_counter() - started < 1.0  # nothing was decoded


def test_the_limit_is_configurable(tmp_path):
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.zeros((100, 300, 3), np.uint8))
    with pytest.raises(MediaError, match=r"0.02 MP limit"):
        read_image(path, max_pixels=20_000)
    assert read_image(path, max_pixels=30_000).image.shape == (100, 300, 3)


@pytest.mark.parametrize("side", [40_000, 100_000])
def test_verify_refuses_a_huge_header_with_exit_2_and_one_line(tmp_path, capsys, side):
    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(side, side))
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "above the 50 MP limit" in err and "Traceback" not in err


def test_swap_refuses_a_huge_target_in_one_line(tmp_path, examples_dir, capsys):
    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(40_000, 40_000))
    code = main(["swap", "-s", str(examples_dir / "obama.jpg"), "-t", str(path),
                 "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "40000x40000" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.png"]


def test_video_frames_above_the_limit_are_refused_before_decoding(tmp_path):
    path = tmp_path / "clip.mp4"
    make_clip(path, frames=3, audio=False)  # 160x120
    with pytest.raises(MediaError, match=r"160x120 .* limit for video frames.*--max-video-megapixels"):
        VideoReader(path, max_pixels=10_000)
    with pytest.raises(MediaError, match="--max-video-megapixels"):
        probe_kind(path, max_video_pixels=10_000)
    with VideoReader(path, max_pixels=160 * 120) as reader:
        assert reader.info.width == 160


def _damaged_files(folder: Path, obama: np.ndarray) -> list[Path]:
    jpeg = cv2.imencode(".jpg", obama[:200, :200])[1].tobytes()
    scan = jpeg.find(b"\xff\xda")
    (folder / "extra.jpg").write_bytes(jpeg[:scan] + b"\0\0\0" + jpeg[scan:])  # libjpeg: "Corrupt JPEG data"
    png = cv2.imencode(".png", obama[:64, :64])[1].tobytes()
    iccp = _chunk(b"iCCP", b"bad\0\0" + zlib.compress(b"not a profile" * 8))  # libpng: "iCCP: too short"
    (folder / "iccp.png").write_bytes(png[:33] + iccp + png[33:])
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[65000] = "private"
    info.tagtype[65000] = 2  # libtiff: "Unknown field with tag 65000"
    PILImage.fromarray(obama[:64, :64]).save(folder / "odd.tiff", tiffinfo=info, compression="tiff_lzw")
    return [folder / "extra.jpg", folder / "iccp.png", folder / "odd.tiff"]


def test_damaged_but_readable_files_print_nothing(tmp_path, obama, capfd):
    """libjpeg, libpng and libtiff print their warnings straight to stderr; none may reach the user."""
    for path in _damaged_files(tmp_path, obama):
        assert read_image(path).image.ndim == 3
    captured = capfd.readouterr()  # the file descriptors, not only sys.stderr
    assert captured.err == "" and captured.out == ""


def _animation(path: Path, frames: int) -> Path:
    images = [PILImage.new("RGB", (32, 32), (40 * i, 0, 0)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


@pytest.mark.parametrize("name", ["anim.webp", "anim.png"])
def test_an_animated_target_is_refused_not_cut_to_one_frame(tmp_path, examples_dir, name):
    from masquerade.api import swap
    from masquerade.errors import UsageError

    target = _animation(tmp_path / name, 3)
    assert read_image(target).frames == 3
    with pytest.raises(UsageError, match=r"animated .* \(3 frames\).*convert it to a video"):
        swap([examples_dir / "obama.jpg"], target, tmp_path / f"out{target.suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
