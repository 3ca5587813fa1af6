import numpy as np
import pytest

from masquerade.errors import UsageError
from masquerade.media.encoders import available_video_encoders, check_encoder, pixel_format
from masquerade.media.image import write_image
from masquerade.media.options import (
    HARDWARE_ENCODERS,
    IMAGE_QUALITY_MIN,
    QUALITY_MAX,
    SOFTWARE_ENCODERS,
    check_image_quality,
    encoder_options,
    quality_limit,
    video_quality,
)


def test_x264_defaults_are_near_transparent_and_real_time():
    assert encoder_options("libx264", None, None) == {"crf": "18", "preset": "veryfast"}
    assert encoder_options("libx264", 28, None) == {"crf": "28", "preset": "veryfast"}


def test_x264_quality_and_preset():
    assert encoder_options("libx264", 18, "slow") == {"crf": "18", "preset": "slow"}


def test_x265_is_quiet():
    assert encoder_options("libx265", 28, "fast") == {
        "crf": "28",
        "preset": "fast",
        "x265-params": "log-level=error",
    }


def test_vp9_uses_constant_quality_mode():
    assert encoder_options("libvpx-vp9", None, None) == {
        "crf": "32",
        "b:v": "0",
        "row-mt": "1",
        "deadline": "good",
        "cpu-used": "4",
    }
    opts = encoder_options("libvpx-vp9", 30, "veryslow")
    assert opts["crf"] == "37" and opts["cpu-used"] == "0"
    assert encoder_options("libvpx-vp9", 0, "5")["cpu-used"] == "5"


def test_svtav1_scales_quality_and_maps_presets():
    assert encoder_options("libsvtav1", 0, "ultrafast") == {"crf": "1", "preset": "12"}
    assert encoder_options("libsvtav1", 30, "8") == {"crf": "37", "preset": "8"}
    assert encoder_options("libsvtav1", None, None) == {}


def test_hardware_encoders():
    assert encoder_options("h264_nvenc", 20, "slow") == {"rc": "vbr", "cq": "20", "preset": "p6"}
    assert encoder_options("hevc_nvenc", None, "p2") == {"rc": "vbr", "cq": "23", "preset": "p2"}
    assert encoder_options("h264_qsv", 25, "ultrafast") == {"global_quality": "25", "preset": "veryfast"}
    assert encoder_options("h264_amf", 20, "medium") == {
        "rc": "cqp",
        "qp_i": "20",
        "qp_p": "20",
        "qp_b": "20",
        "quality": "balanced",
    }


@pytest.mark.parametrize("quality", [-1, 52])
def test_quality_out_of_range(quality):
    with pytest.raises(UsageError, match="between 0"):
        encoder_options("libx264", quality, None)


@pytest.mark.parametrize("encoder", [*SOFTWARE_ENCODERS, *HARDWARE_ENCODERS])
def test_qualities_the_watermark_would_not_survive_are_refused(encoder):
    previous = 0
    for width, height in ((256, 144), (640, 360), (1280, 720), (720, 1280), (3840, 2160)):
        limit = quality_limit(encoder, width, height)
        assert 18 <= limit < QUALITY_MAX and limit >= previous  # larger frames keep more of the mark
        previous = limit
        assert video_quality(encoder, limit, width, height) == limit  # the limit itself is accepted
        default = video_quality(encoder, None, width, height)  # the default, lowered where it must be
        assert default is None or default == limit
        for quality in (limit + 1, QUALITY_MAX):
            with pytest.raises(UsageError, match=f"would erase the invisible watermark.* to {limit} "):
                video_quality(encoder, quality, width, height)
    assert quality_limit(encoder, 1280, 720) == quality_limit(encoder, 720, 1280)  # by the short side


def test_a_default_the_watermark_would_not_survive_is_lowered_on_small_frames():
    assert video_quality("libx264", None, 1280, 720) is None  # CRF 18 passes everywhere
    small = quality_limit("libsvtav1", 256, 144)
    assert small < 28 and video_quality("libsvtav1", None, 256, 144) == small  # SVT's CRF 35 would not
    assert video_quality("libsvtav1", None, 1920, 1080) is None


def test_hardware_encoders_take_their_codec_s_measured_limit():
    for size in ((640, 360), (1920, 1080)):
        assert quality_limit("h264_nvenc", *size) == quality_limit("libx264", *size)
        assert quality_limit("hevc_qsv", *size) == quality_limit("libx265", *size)
        assert quality_limit("av1_nvenc", *size) == min(quality_limit(e, *size) for e in SOFTWARE_ENCODERS)


def test_image_quality_below_the_watermark_s_limit_is_refused(tmp_path):
    check_image_quality(IMAGE_QUALITY_MIN)
    check_image_quality(100)
    for quality in (IMAGE_QUALITY_MIN - 1, 1, 101):
        with pytest.raises(UsageError, match="image quality must be between 40 and 100"):
            check_image_quality(quality)
    with pytest.raises(UsageError, match="watermark"):
        write_image(tmp_path / "x.jpg", np.zeros((8, 8, 3), np.uint8), quality=20)
    assert not (tmp_path / "x.jpg").exists()


def test_unknown_preset_and_encoder():
    with pytest.raises(UsageError, match="unknown preset"):
        encoder_options("libx264", None, "warp9")
    with pytest.raises(UsageError, match="unsupported video encoder"):
        encoder_options("mpeg4", None, None)
    with pytest.raises(UsageError, match="unsupported video encoder"):
        check_encoder("mpeg4")


def test_available_encoders_include_the_default():
    found = available_video_encoders()
    assert found[0] == "libx264"
    assert set(found) <= {"libx264", "libx265", "libvpx-vp9", "libsvtav1"} | {
        n for n in found if n.split("_")[-1] in ("nvenc", "qsv", "amf", "videotoolbox")
    }


def test_pixel_format_keeps_odd_sizes():
    assert pixel_format("libx264", 160, 120) == "yuv420p"
    assert pixel_format("libx264", 161, 120) == "yuv444p"
