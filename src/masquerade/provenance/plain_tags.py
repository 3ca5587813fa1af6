"""Plain container tags saying what masquerade did to a video, for containers C2PA cannot carry (MKV, WebM).

They are unsigned and easily removed: a statement, not a proof. The writer sets the face-swap tags while
muxing (``plain_metadata_tags``); ``ensure_tags`` checks them against what the run did and rewrites
them by a stream-copy remux when they are missing or claim more than happened (no face was replaced).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from masquerade._version import __version__
from masquerade.errors import OutputError

SOFTWARE = "masquerade"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
TAG_FORMATS: frozenset[str] = frozenset({".mkv", ".webm"})
"""Video containers c2pa cannot bind: they get ``plain_metadata_tags`` instead."""
TAG_KEY = "masquerade_label"
TAG_VALUE = "ai-face-swap"
UNCHANGED_TAG_VALUE = "watermarked-unchanged"
TAG_VALUES = (TAG_VALUE, UNCHANGED_TAG_VALUE)
"""Values of ``TAG_KEY`` masquerade writes: faces replaced, or none (the watermark only)."""

LabelAction = Literal["swap", "enhance"]
"""What masquerade did to the faces: replaced them (``swap``), or only restored them with a trained
model (``enhance``, ``masquerade enhance``): either way the output is machine-altered and labelled."""


@dataclass(frozen=True)
class EditSummary:
    """What a run did to the picture, so that its label claims exactly that."""

    faces_replaced: int
    """Faces changed (replaced, or restored for ``enhance``); for a video, summed over its frames."""
    frames: int = 1
    frames_changed: int = 0
    """Frames in which at least one face was changed."""
    action: LabelAction = "swap"

    @property
    def replaced(self) -> bool:
        """Whether any face was changed (else the output is the target, watermarked)."""
        return self.faces_replaced > 0


FACE_SWAP = EditSummary(faces_replaced=1, frames=1, frames_changed=1)
"""A generic "faces were replaced" summary, for the video writer's tags before the count is known."""

_VERBS: dict[str, tuple[str, str]] = {
    "swap": ("AI face swap", "replaced by masquerade"),
    "enhance": ("AI face enhancement", "restored by a trained model in masquerade (no face was swapped)"),
}


def edit_description(edit: EditSummary, kind: str) -> str:
    """One sentence saying what happened, for the C2PA action's description and the plain tags."""
    if not edit.replaced:
        verb = "replaced" if edit.action == "swap" else "changed"
        return (f"no face was {verb}: the {kind} shows the target as it was, re-encoded, with "
                f"masquerade's invisible watermark")
    title, done = _VERBS[edit.action]
    if kind == "video" and edit.frames > 1:
        return f"{title}: faces were {done} in {edit.frames_changed} of {edit.frames} frames"
    noun = "face was" if edit.faces_replaced == 1 else "faces were"
    return f"{title}: {edit.faces_replaced} {noun} {done}"


def plain_metadata_tags(version: str = __version__, edit: EditSummary = FACE_SWAP) -> dict[str, str]:
    """Container tags saying what masquerade did (the video writer sets the face-swap ones at mux time)."""
    if not edit.replaced:
        return {
            "comment": f"masquerade {version}: {edit_description(edit, 'video')}",
            TAG_KEY: UNCHANGED_TAG_VALUE,
            "masquerade_version": version,
        }
    title, done = _VERBS[edit.action]
    return {
        "comment": f"{title}: faces in this video were {done} {version}",
        TAG_KEY: TAG_VALUE,
        "masquerade_version": version,
        "masquerade_action": edit.action,
        "digital_source_type": DIGITAL_SOURCE_TYPE,
    }


def container_tags(path: Path) -> dict[str, str] | None:
    """Container-level tags, keys lower-cased (Matroska upper-cases them); None if not a container."""
    import av

    try:
        with av.open(str(path)) as container:
            return {str(k).lower(): str(v) for k, v in container.metadata.items()}
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return None


def ensure_tags(path: Path, version: str, edit: EditSummary) -> None:
    """Make the file's tags say what ``edit`` says (a remux only when they do not already)."""
    tags = container_tags(path)
    if tags is None:
        raise OutputError(f"could not label {path.name}: it is not a readable video container")
    wanted = plain_metadata_tags(version, edit)
    if tags.get(TAG_KEY) == wanted[TAG_KEY]:
        return  # the writer already set them while muxing
    _remux_with_tags(path, wanted)


_OUR_KEYS = ("comment", TAG_KEY, "masquerade_version", "masquerade_action", "digital_source_type")


def _remux_with_tags(path: Path, tags: dict[str, str]) -> None:
    """Stream-copy every stream into a new file with ``tags`` added, then replace ``path``."""
    import av

    temp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tag{path.suffix}")
    try:
        with av.open(str(path)) as src, av.open(str(temp), "w") as dst:
            # Keep the file's other tags; ours are replaced as a whole (a stale claim must not survive).
            dst.metadata.update({k: v for k, v in src.metadata.items() if k.lower() not in _OUR_KEYS})
            dst.metadata.update(tags)
            streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
            for packet in src.demux():
                if packet.size == 0:  # the demuxer's end-of-stream marker (dts may be None in MKV)
                    continue
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
        shutil.copymode(path, temp)
        os.replace(temp, path)
    except (av.FFmpegError, OSError) as exc:
        raise OutputError(f"could not write the AI label tags of {path.name}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
