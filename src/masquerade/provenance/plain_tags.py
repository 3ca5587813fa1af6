"""Plain container tags saying a video is an AI face swap, for containers C2PA cannot carry (MKV, WebM).

They are unsigned and easily removed: a statement, not a proof. The writer sets them while muxing
(``plain_metadata_tags``); ``ensure_tags`` adds them by a stream-copy remux when they are missing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
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

LabelAction = Literal["swap", "enhance"]
"""What masquerade did to the faces: replaced them (``swap``), or only restored them with a trained
model (``enhance``, ``masquerade enhance``): either way the output is machine-altered and labelled."""
TAG_COMMENTS: dict[str, str] = {
    "swap": "AI face swap: faces in this video were replaced by masquerade {version}",
    "enhance": "AI face enhancement: faces in this video were restored by a trained model in masquerade "
               "{version} (no face was swapped)",
}


def plain_metadata_tags(version: str = __version__, action: LabelAction = "swap") -> dict[str, str]:
    """Container tags saying the file is AI-altered (for the video writer to set at mux time)."""
    return {
        "comment": TAG_COMMENTS[action].format(version=version),
        TAG_KEY: TAG_VALUE,
        "masquerade_version": version,
        "masquerade_action": action,
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


def ensure_tags(path: Path, version: str, action: LabelAction = "swap") -> None:
    tags = container_tags(path)
    if tags is None:
        raise OutputError(f"could not label {path.name}: it is not a readable video container")
    if tags.get(TAG_KEY) == TAG_VALUE:
        return  # the writer already set them while muxing
    _remux_with_tags(path, plain_metadata_tags(version, action))


def _remux_with_tags(path: Path, tags: dict[str, str]) -> None:
    """Stream-copy every stream into a new file with ``tags`` added, then replace ``path``."""
    import av

    temp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tag{path.suffix}")
    try:
        with av.open(str(path)) as src, av.open(str(temp), "w") as dst:
            dst.metadata.update(src.metadata)
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
