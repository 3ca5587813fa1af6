"""Pure builders for encoder settings, and the output formats masquerade writes.

``encoder_options`` maps one quality scale (0 best .. 51 worst, CRF-like) and one preset vocabulary
(x264's ``ultrafast`` .. ``veryslow``, or the encoder's own preset names) onto each encoder's
private options. It touches no media and is tested by equality.
"""

from __future__ import annotations

from masquerade.errors import UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm")

SOFTWARE_ENCODERS = ("libx264", "libx265", "libvpx-vp9", "libsvtav1")
HARDWARE_ENCODERS = (
    "h264_nvenc", "hevc_nvenc", "av1_nvenc",
    "h264_qsv", "hevc_qsv", "av1_qsv",
    "h264_amf", "hevc_amf", "av1_amf",
    "h264_videotoolbox", "hevc_videotoolbox",
)  # fmt: skip

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

# x264 preset name -> the encoder's own speed knob, fastest first (same order as PRESETS).
_VP9_CPU_USED = dict(zip(PRESETS, ("8", "7", "6", "5", "4", "3", "2", "1", "0"), strict=True))
_SVTAV1_PRESET = dict(zip(PRESETS, ("12", "11", "10", "9", "8", "6", "4", "2", "1"), strict=True))
_NVENC_PRESET = dict(zip(PRESETS, ("p1", "p2", "p3", "p3", "p4", "p5", "p6", "p7", "p7"), strict=True))
_QSV_PRESET = dict(zip(PRESETS, ("veryfast", "veryfast", *PRESETS[2:]), strict=True))
_AMF_QUALITY = dict(zip(PRESETS, ("speed",) * 4 + ("balanced",) * 2 + ("quality",) * 3, strict=True))

QUALITY_MAX = 51
X264_DEFAULT_CRF = 18
X264_DEFAULT_PRESET = "veryfast"

# The worst --video-quality (0..51 scale) at which masquerade's invisible watermark still reads on at
# least 95 % of a video's frames after a stripped remux, per encoder and by the frame's short side (the
# row of the largest listed side not above it): (side, limit, limit with a fast preset). Measured at
# 144p, 180p, 240p and 360p for every preset, at 720p (landscape and portrait) and 1080p for the
# default, fastest two, medium and slow ones: a row's limit is the lowest over its presets of the worst
# quality read on >= 23 of 24 sampled frames of three clips. Every encoder x size x preset measured is
# checked at its limit by `benchmarks/bench_watermark_grid.py --limits` (table:
# benchmarks/results-watermark-grid.txt). A codec keeps less of the pattern in small frames and with
# its fastest presets (x265's ultrafast and superfast drop most of it), so their limits are lower.
# Above a limit the pixels would no longer carry the label: masquerade refuses rather than write an
# output verify cannot recognise.
_WATERMARK_QUALITY_LIMITS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "libx264": ((0, 18, 18), (180, 23, 23), (360, 28, 28), (720, 32, 32), (1080, 40, 40)),
    "libx265": ((0, 22, 18), (180, 24, 20), (360, 30, 26), (720, 32, 28), (1080, 36, 34)),
    "libvpx-vp9": ((0, 24, 24), (240, 26, 26), (360, 34, 34), (720, 38, 38), (1080, 44, 44)),
    "libsvtav1": ((0, 16, 16), (180, 18, 18), (240, 24, 24), (360, 30, 30), (720, 34, 34), (1080, 44, 44)),
}
FAST_PRESETS = ("ultrafast", "superfast")
"""The presets whose encoders keep least of the watermark (their own limits in the table above)."""
# The same speeds in the encoders' own preset numbers (VP9's cpu-used, SVT-AV1's preset).
_FAST_NATIVE_PRESETS = {"libvpx-vp9": {"7", "8"}, "libsvtav1": {"11", "12", "13"}}
# Hardware encoders cannot be measured on a machine without the device: they get the strictest limits
# of the software encoder of their codec (their quality options take the same 0..51 number, their
# presets are their own), AV1 and Apple's the strictest ones of all.
_HARDWARE_CODEC = {"h264": "libx264", "hevc": "libx265"}

IMAGE_QUALITY_MIN = 40
"""The lowest JPEG / WebP ``--image-quality`` accepted: below it the watermark may not read back
(measured by benchmarks/bench_watermark.py: every sample photo reads after quality 40)."""


def quality_limit(encoder: str, width: int, height: int, preset: str | None = None) -> int:
    """The worst ``--video-quality`` accepted for ``encoder`` at this frame size and ``preset`` (measured)."""
    tables = _WATERMARK_QUALITY_LIMITS
    short = min(width, height)

    def limit(table: tuple[tuple[int, int, int], ...], fast: bool | None) -> int:
        row = max((r for r in table if r[0] <= short), key=lambda r: r[0])
        return min(row[1], row[2]) if fast is None else row[2] if fast else row[1]

    if encoder in tables:
        fast = preset in FAST_PRESETS or preset in _FAST_NATIVE_PRESETS.get(encoder, ())
        return limit(tables[encoder], fast)
    software = _HARDWARE_CODEC.get(encoder.split("_", 1)[0])
    return limit(tables[software], None) if software else min(limit(t, None) for t in tables.values())


# What the default (no --video-quality) gives, on the 0..51 scale: x264/x265 CRF 18, VP9 CRF 32,
# SVT-AV1's own CRF 35, nvenc cq 23; the other hardware encoders' own defaults have no such number.
_DEFAULT_QUALITY = {"libx264": X264_DEFAULT_CRF, "libx265": X264_DEFAULT_CRF, "libvpx-vp9": 26,
                    "libsvtav1": 28}
_HARDWARE_DEFAULT_QUALITY = 23


def video_quality(encoder: str, quality: int | None, width: int, height: int,
                  preset: str | None = None) -> int | None:
    """The quality to encode a ``width`` x ``height`` video with at ``preset``: ``quality`` when given
    (``UsageError`` if the watermark would not survive it), else None for the encoder's default, or the
    limit where that default would erase the watermark (small frames, fast presets)."""
    if quality is not None:
        _check_quality(quality)
        check_video_quality(encoder, quality, width, height, preset)
        return quality
    limit = quality_limit(encoder, width, height, preset)
    default = _DEFAULT_QUALITY.get(encoder, _HARDWARE_DEFAULT_QUALITY)
    return None if default <= limit else limit


def check_video_quality(encoder: str, quality: int, width: int, height: int,
                        preset: str | None = None) -> None:
    """``UsageError`` when ``quality`` would erase the watermark of a ``width`` x ``height`` video
    encoded at ``preset``."""
    limit = quality_limit(encoder, width, height, preset)
    if quality > limit:
        at = f" preset {preset}" if preset else ""
        raise UsageError(
            f"video quality {quality} with {encoder}{at} at {width}x{height} would erase the invisible "
            f"watermark that labels the output; choose 0 (best) to {limit} for this size"
        )


def _check_quality(quality: int | None) -> None:
    if quality is not None and not 0 <= quality <= QUALITY_MAX:
        raise UsageError(f"video quality must be between 0 (best) and {QUALITY_MAX}, got {quality}")


def check_image_quality(quality: int) -> None:
    """``UsageError`` unless ``quality`` is a JPEG / WebP quality the watermark survives."""
    if not IMAGE_QUALITY_MIN <= quality <= 100:
        raise UsageError(
            f"image quality must be between {IMAGE_QUALITY_MIN} and 100 (below {IMAGE_QUALITY_MIN} the "
            f"invisible watermark that labels the output may not survive), got {quality}"
        )


def _scaled(quality: int, top: int, bottom: int = 0) -> str:
    """Map 0..51 onto an encoder's ``bottom..top`` quantiser range."""
    return str(round(bottom + quality * (top - bottom) / QUALITY_MAX))


def _preset(encoder: str, preset: str | None, table: dict[str, str], native: set[str]) -> str | None:
    if preset is None:
        return None
    if preset in table:
        return table[preset]
    if preset in native:
        return preset
    choices = ", ".join([*PRESETS, *sorted(native)])
    raise UsageError(f"unknown preset {preset!r} for {encoder}; choose one of: {choices}")




def encoder_options(encoder: str, quality: int | None, preset: str | None) -> dict[str, str]:
    """FFmpeg private options for ``encoder`` at ``quality`` (0..51, None = default) and ``preset``."""
    opts: dict[str, str] = {}
    family = encoder.rsplit("_", 1)[-1] if "_" in encoder else encoder
    if encoder in ("libx264", "libx265"):
        # Defaults for re-encoding someone's footage: near-transparent quality, and a preset a
        # 2-core machine encodes 720p with in real time (x264's own "medium" caps it at ~15 fps).
        opts["crf"] = str(X264_DEFAULT_CRF if quality is None else quality)
        chosen = _preset(encoder, preset or X264_DEFAULT_PRESET, {p: p for p in PRESETS}, {"placebo"})
        if chosen is not None:
            opts["preset"] = chosen
        if encoder == "libx265":
            opts["x265-params"] = "log-level=error"  # x265 prints to stderr itself otherwise
    elif encoder == "libvpx-vp9":
        # b:v=0 selects constant-quality mode; without it libvpx targets a tiny default bitrate.
        crf = "32" if quality is None else _scaled(quality, 63)
        opts.update({"crf": crf, "b:v": "0", "row-mt": "1", "deadline": "good"})
        opts["cpu-used"] = _preset(encoder, preset, _VP9_CPU_USED, {str(i) for i in range(9)}) or "4"
    elif encoder == "libsvtav1":
        if quality is not None:
            opts["crf"] = _scaled(quality, 63, 1)
        chosen = _preset(encoder, preset, _SVTAV1_PRESET, {str(i) for i in range(14)})
        if chosen is not None:
            opts["preset"] = chosen
    elif family == "nvenc":
        opts["rc"] = "vbr"
        opts["cq"] = str(23 if quality is None else max(quality, 1))  # cq=0 means "automatic" in nvenc
        chosen = _preset(encoder, preset, _NVENC_PRESET, {f"p{i}" for i in range(1, 8)})
        if chosen is not None:
            opts["preset"] = chosen
    elif family == "qsv":
        if quality is not None:
            opts["global_quality"] = str(max(quality, 1))
        chosen = _preset(encoder, preset, _QSV_PRESET, set())
        if chosen is not None:
            opts["preset"] = chosen
    elif family == "amf":
        if quality is not None:
            opts.update({"rc": "cqp", "qp_i": str(quality), "qp_p": str(quality), "qp_b": str(quality)})
        chosen = _preset(encoder, preset, _AMF_QUALITY, {"speed", "balanced", "quality"})
        if chosen is not None:
            opts["quality"] = chosen
    elif family == "videotoolbox":
        if quality is not None:
            opts["q:v"] = _scaled(QUALITY_MAX - quality, 100, 1)  # videotoolbox: higher is better
        if preset is not None:
            raise UsageError(f"{encoder} has no presets")
    else:
        known = ", ".join((*SOFTWARE_ENCODERS, *HARDWARE_ENCODERS))
        raise UsageError(f"unsupported video encoder {encoder!r}; known encoders: {known}")
    _check_quality(quality)
    return opts
