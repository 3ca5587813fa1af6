"""``masquerade verify``: is this file labelled as masquerade's AI face swap?

Two independent labels are read: the invisible watermark (in the pixels, so it survives re-encoding,
resizing and metadata stripping) and the content credentials (a signed C2PA manifest, or masquerade's
plain container tags where C2PA cannot go). A file is labelled when either one says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from masquerade._stages.watermark import WatermarkReading, read_watermark, vote
from masquerade.config import LimitOptions
from masquerade.errors import MediaError
from masquerade.media import orientation
from masquerade.media.colour import ColourSpace, FrameConverter
from masquerade.provenance.c2pa_label import LabelReading, read_label
from masquerade.types import Image

MAX_FRAMES = 30
"""Video frames read for the watermark vote, spread over the whole file."""
SEQUENTIAL_LIMIT = 1500
RETRY_TURNS: tuple[orientation.Orientation, ...] = ("cw90", "ccw90", "rot180")
RETRY_FRAMES = 10
"""Frames per turned retry: enough for the vote, a third of the cost of a full pass."""
"""Up to this many frames a video is decoded front to back (exact spacing); longer ones are sampled by
seeking, which lands on key frames but costs the same whatever the length."""


@dataclass(frozen=True)
class VerifyResult:
    path: Path
    media: Literal["image", "video"]
    watermark: WatermarkReading
    """For a video: the vote over the frames read."""
    frames_read: int
    frames_marked: int
    """Frames on which the watermark was read (1 or 0 for an image)."""
    label: LabelReading

    @property
    def labelled(self) -> bool:
        return self.watermark.found or self.label.labelled

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (stable keys for scripts)."""
        payload = self.watermark.payload
        return {
            "path": str(self.path),
            "media": self.media,
            "labelled": self.labelled,
            "watermark": {
                "found": self.watermark.found,
                "payload": None if payload is None else f"0x{payload:08x}",
                "key_id": self.watermark.key_id,
                "confidence": round(float(self.watermark.confidence), 4),
                "frames_read": self.frames_read,
                "frames_marked": self.frames_marked,
            },
            "c2pa": {
                "present": self.label.kind == "c2pa",
                "valid": self.label.valid,
                "trusted": self.label.trusted,
                "by_masquerade": self.label.by_masquerade,
                "validation_state": self.label.validation_state,
                "failures": list(self.label.failures),
                "claims": self.label.claims if self.label.kind == "c2pa" else {},
                "error": self.label.error,
            },
            "plain_tag": {
                "present": self.label.kind == "tag",
                "claims": self.label.claims if self.label.kind == "tag" else {},
            },
        }


def verify_file(path: Path, *, max_frames: int = MAX_FRAMES,
                limits: LimitOptions | None = None) -> VerifyResult:
    """Read both labels of ``path``; ``MediaError`` if it is not a readable image or video, or is larger
    than ``limits`` allow (refused from its header, before decoding)."""
    from masquerade.media.probe import probe_kind

    path = Path(path)
    limits = limits or LimitOptions()
    media = probe_kind(path, limits.max_video_pixels)
    if media == "image":
        from masquerade.media.image import read_image

        reading = read_watermark(read_image(path, limits.max_image_pixels).image)
        readings = [reading]
    else:
        readings = [read_watermark(frame) for frame in sample_video_frames(path, max_frames)]
        if not readings:
            raise MediaError(f"{path}: no decodable video frame")
        reading = vote(readings)
        # A re-encode may have dropped a rotation from the metadata: the marked frames are then
        # stored turned. The reader does not search rotations, so try the three turns.
        for turn in RETRY_TURNS if not reading.found else ():
            frames = sample_video_frames(path, min(max_frames, RETRY_FRAMES), turn)
            turned = [read_watermark(frame) for frame in frames]
            if vote(turned).found:
                readings, reading = turned, vote(turned)
                break
    return VerifyResult(
        path=path,
        media=media,
        watermark=reading,
        frames_read=len(readings),
        frames_marked=sum(r.found for r in readings),
        label=read_label(path),
    )


class _Upright:
    """Decoded frames as the pipeline saw them: converted as the reader converts them, the display
    matrix applied (masquerade marks upright frames), then ``extra`` (a guess at a turn that a
    re-encode dropped from the metadata)."""

    def __init__(self, extra: orientation.Orientation = "none") -> None:
        self.extra = extra
        self._converter: FrameConverter | None = None
        self._turn: orientation.Orientation = "none"

    def __call__(self, frame: Any) -> Image:
        if self._converter is None:
            matrix = frame.side_data.get("DISPLAYMATRIX") if len(frame.side_data) else None
            turn = orientation.from_display_matrix(bytes(matrix)) if matrix is not None else None
            self._turn = turn or "none"
            self._converter = FrameConverter(
                ColourSpace.of(frame.colorspace, frame.color_range, frame.format.name, frame.height)
            )
        image = orientation.apply(self._converter.to_bgr(frame), self._turn)
        return orientation.apply(image, self.extra)


def sample_video_frames(
    path: Path, max_frames: int = MAX_FRAMES, extra: orientation.Orientation = "none"
) -> Iterator[Image]:
    """Up to ``max_frames`` upright BGR frames spread evenly over the video (first frame included)."""
    import av

    from masquerade.media.probe import open_input, video_stream

    with open_input(path) as container:
        stream = video_stream(container)
        if stream is None:
            raise MediaError(f"{path} has no video stream")
        stream.thread_type = "AUTO"
        total = _frame_count(stream)
        try:
            if total is not None and total > SEQUENTIAL_LIMIT and stream.duration:
                yield from _by_seeking(container, stream, max_frames, _Upright(extra))
            else:
                yield from _sequential(container, stream, total, max_frames, _Upright(extra))
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: video cannot be decoded ({exc})") from exc


def _frame_count(stream: Any) -> int | None:
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base and stream.average_rate:
        return int(float(stream.duration * stream.time_base * stream.average_rate))
    container_duration = stream.container.duration  # microseconds
    if container_duration and stream.average_rate:
        return int(container_duration / 1e6 * float(stream.average_rate))
    return None


def _sequential(
    container: Any, stream: Any, total: int | None, max_frames: int, upright: _Upright
) -> Iterator[Image]:
    # Unknown length: every frame is a candidate, keep a stride that fits a few minutes in max_frames.
    step = max(1, (total or max_frames * 60) // max_frames)
    taken = 0
    for index, frame in enumerate(container.decode(stream)):
        if index % step == 0:
            yield upright(frame)
            taken += 1
            if taken >= max_frames:
                return


def _by_seeking(container: Any, stream: Any, max_frames: int, upright: _Upright) -> Iterator[Image]:
    start = stream.start_time or 0
    seen: set[int] = set()
    for target in np.linspace(start, start + stream.duration, max_frames, endpoint=False):
        container.seek(int(target), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is not None and frame.pts in seen:
                break  # long GOP: this key frame was already read
            if frame.pts is not None:
                seen.add(frame.pts)
            yield upright(frame)
            break

