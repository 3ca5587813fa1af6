import av
import cv2
import numpy as np
import pytest
from av.video.reformatter import Interpolation

from masquerade.media.colour import ColourSpace, FrameConverter

ACCURATE = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


@pytest.fixture(scope="module")
def photo(obama):
    return cv2.resize(obama, (320, 400), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize(
    ("colorspace", "color_range", "pix_fmt", "sws", "sws_range"),
    [
        (1, 1, "yuv420p", "ITU709", "MPEG"),
        (5, 2, "yuvj420p", "ITU601", "JPEG"),
        (9, 1, "yuv420p", "BT2020", "MPEG"),
    ],
)
def test_fast_path_agrees_with_swscale(photo, colorspace, color_range, pix_fmt, sws, sws_range):
    converter = FrameConverter(ColourSpace.of(colorspace, color_range, pix_fmt, 400))
    # Ours -> FFmpeg's accurate decoder: the same colours come back (only 4:2:0 chroma loss).
    ours = converter.from_bgr(photo, pix_fmt)
    decoded = ours.reformat(
        format="bgr24", src_colorspace=sws, src_color_range=sws_range, interpolation=ACCURATE
    ).to_ndarray()
    difference = decoded.astype(int) - photo
    assert np.abs(difference).mean() < 1.5 and np.abs(difference.mean(axis=(0, 1))).max() < 0.5
    if sws_range == "JPEG":
        return  # swscale's own full-range encoder drifts (~0.9 level per round trip): no oracle there
    # FFmpeg's accurate encoder -> ours.
    theirs = av.VideoFrame.from_ndarray(photo, format="bgr24").reformat(
        format=pix_fmt, dst_colorspace=sws, dst_color_range=sws_range, interpolation=ACCURATE
    )
    difference = converter.to_bgr(theirs).astype(int) - photo
    # A wrong matrix or range shows as a bias; the mean error is 4:2:0 chroma loss.
    assert np.abs(difference).mean() < 2.5 and np.abs(difference.mean(axis=(0, 1))).max() < 0.5


def test_generations_do_not_drift(photo):
    converter = FrameConverter(ColourSpace.of(2, 0, "yuv420p", 400))
    once = converter.to_bgr(converter.from_bgr(photo, "yuv420p"))
    image = once
    for _ in range(4):
        image = converter.to_bgr(converter.from_bgr(image, "yuv420p"))
    # Untouched pixels survive further decode/encode generations without loss or colour drift.
    assert np.abs(image.astype(int) - once).mean() < 0.1
    assert np.abs((image.astype(int) - photo).mean(axis=(0, 1))).max() < 0.4  # clipping at 0/255


def test_untagged_video_follows_player_convention():
    assert ColourSpace.of(2, 0, "yuv420p", 1080).sws_name() == "ITU709"
    assert ColourSpace.of(2, 0, "yuv420p", 480).sws_name() == "ITU601"
    assert ColourSpace.of(2, 0, "yuvj420p", 480).full_range


def test_other_layouts_use_swscale(photo):
    converter = FrameConverter(ColourSpace.of(1, 1, "yuv444p", 400))
    for pix_fmt in ("yuv444p", "nv12"):
        frame = converter.from_bgr(photo, pix_fmt)
        assert frame.format.name == pix_fmt
        assert np.abs(converter.to_bgr(frame).astype(int) - photo).mean() < 1.5
    odd = np.ascontiguousarray(photo[:399, :319])
    frame = converter.from_bgr(odd, "yuv420p")
    assert np.abs(converter.to_bgr(frame).astype(int) - odd).mean() < 2
