"""Live preview and face lists: one frame through ``masquerade.Pipeline``, guard and watermark included.

The server keeps the last few pipelines (one per set of model options), prepared sources, reference
embeddings and decoded frames, so a changed setting costs one swap, not a model load or a decode.
Renders take turns (a lock): on a small CPU two at once would only make both late.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from masquerade import Pipeline, RunConfig
from masquerade.config import EncodeOptions, SelectOptions
from masquerade.errors import ContentRefused
from masquerade.studio.datadir import DataDir, new_id
from masquerade.studio.media import FrameCache, encode_jpeg, face_thumbnail, read_frame
from masquerade.studio.store import FileRecord, JobStore
from masquerade.types import Face

T = TypeVar("T")


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        self.items[key] = value
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return value

    def drop(self, match: Callable[[Hashable], bool]) -> None:
        for key in [k for k in self.items if match(k)]:
            del self.items[key]


@dataclass(frozen=True)
class Rendered:
    jpeg: bytes
    faces_swapped: int
    seconds: float


class RefusedInput(ContentRefused):
    """The content guard refused one of the request's files (which the caller deletes)."""

    def __init__(self, message: str, file_id: str) -> None:
        super().__init__(message)
        self.file_id = file_id


def models_config(config: RunConfig) -> RunConfig:
    """``config`` without what does not change the stages (encoding, selection; reference mode keeps
    the recognizer in)."""
    return replace(config, encode=EncodeOptions(), select=SelectOptions())


def models_key(config: RunConfig) -> str:
    return repr(models_config(config))


def labels(records: list[FileRecord]) -> dict[str, FileRecord]:
    """A distinct display label per file (the name, with the id's start when two names are equal)."""
    names = [r.name for r in records]
    return {(r.name if names.count(r.name) == 1 else f"{r.name} ({r.id[:6]})"): r for r in records}


class PreviewService:
    def __init__(self, data: DataDir, store: JobStore) -> None:
        self.data, self.store = data, store
        self._lock = threading.Lock()
        self._pipelines = _Lru(2)
        self._sources = _Lru(8)
        self._references = _Lru(8)
        self._faces = _Lru(64)
        self._found = _Lru(16)
        self.frames = FrameCache()

    def warm(self) -> None:
        """Build the default pipeline now (models loaded, runtimes warmed), so the first preview a
        person asks for does not wait for it. Errors surface on that preview instead."""
        with self._lock, contextlib.suppress(Exception):
            self.pipeline(RunConfig())

    def pipeline(self, config: RunConfig) -> Pipeline:
        """A pipeline for ``config``'s models. Encoding plays no part in a preview and the selection
        options are given per render, so changing them costs no model load; it is built for
        reference matching, so it has the recognizer whatever the face mode."""
        return self._pipelines.get(models_key(config), lambda: Pipeline(models_config(config)))

    def frame(self, record: FileRecord, index: int) -> np.ndarray:
        index = max(0, min(index, (record.frames or 1) - 1)) if record.kind == "video" else 0
        return self.frames.get((record.id, index), lambda: read_frame(
            self.data.inside(record.path), record.kind, index, record.fps))

    def found_faces(
        self, pipeline: Pipeline, record: FileRecord, index: int, embed: bool = False
    ) -> list[Face]:
        """The faces ``pipeline``'s detector finds in a frame (kept: settings change, the frame does
        not); ``embed`` for reference matching (their embeddings are then computed once, not per render)."""
        key = (repr(pipeline.config.detect), repr(pipeline.config.runtime), pipeline.config.recognizer,
               record.id, index, embed)
        image = self.frame(record, index)
        try:
            return self._found.get(key, lambda: pipeline.find_faces(image, label=record.name, embed=embed))
        except ContentRefused as error:
            raise RefusedInput(str(error), record.id) from None

    def faces(self, record: FileRecord, index: int) -> list[dict[str, Any]]:
        """The faces of one frame, left to right, each with a thumbnail file usable as ``reference``."""
        with self._lock:
            return self._faces.get((record.id, index), lambda: self._thumbnails(record, index))

    def _thumbnails(self, record: FileRecord, index: int) -> list[dict[str, Any]]:
        image = self.frame(record, index)
        faces = self.found_faces(self.pipeline(RunConfig()), record, index)
        found = []
        for i, face in enumerate(faces):
            thumb_id = new_id()
            path = self.data.uploads / f"{thumb_id}.jpg"
            jpeg = encode_jpeg(face_thumbnail(image, face), quality=92)
            path.write_bytes(jpeg)
            self.store.add_file(FileRecord(
                id=thumb_id, name=f"face {i + 1} of {record.name}", kind="image",
                path=self.data.relative(path), width=192, height=192, frames=1, fps=None,
                size=len(jpeg), parent=record.id))
            found.append({"index": i, "box": [round(float(v), 1) for v in face.bbox],
                          "score": round(float(face.score), 3), "reference": thumb_id,
                          "thumbnail": f"/api/files/{thumb_id}/content"})
        return found

    def render(self, sources: list[FileRecord], target: FileRecord, index: int, config: RunConfig,
               reference: FileRecord | None) -> Rendered:
        """The frame swapped with ``config``, watermarked, as a JPEG carrying the C2PA label."""
        from masquerade.media.image import read_image

        with self._lock:
            started = time.perf_counter()
            pipeline = self.pipeline(config)
            key = models_key(config)
            named = labels(sources)
            try:
                prepared = self._sources.get((key, tuple(r.id for r in sources)),
                    lambda: pipeline.prepare_source(
                    [(label, read_image(self.data.inside(r.path)).image) for label, r in named.items()]))
            except ContentRefused as error:
                raise RefusedInput(str(error), _named_in(str(error), named) or sources[0].id) from None
            embedding = None
            if config.select.mode == "reference" and reference is not None:
                embedding = self._references.get((key, reference.id), lambda: pipeline.reference_embedding(
                    reference.name, read_image(self.data.inside(reference.path)).image))
            image = self.frame(target, index)
            faces = self.found_faces(pipeline, target, index, embed=config.select.mode == "reference")
            try:
                selector = pipeline.new_selector(embedding, replace(config.select, reference=None))
                result, swapped = pipeline.swap_image(image.copy(), prepared, selector, faces=faces)
            except ContentRefused as error:
                raise RefusedInput(str(error).replace("target", target.name, 1), target.id) from None
            jpeg = self._labelled_jpeg(result, swapped)
            return Rendered(jpeg, swapped, time.perf_counter() - started)

    def _labelled_jpeg(self, image: np.ndarray, swapped: int) -> bytes:
        from masquerade._version import __version__
        from masquerade.provenance.c2pa_label import label_file
        from masquerade.provenance.plain_tags import EditSummary

        temp = self.data.temp_path(".jpg")
        try:
            temp.write_bytes(encode_jpeg(image, quality=88))
            edit = EditSummary(faces_replaced=swapped, frames=1, frames_changed=int(swapped > 0))
            label_file(temp, version=__version__, kind="image", edit=edit)
            return temp.read_bytes()
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def forget(self, file_id: str) -> None:
        """Drop every cached thing made from a deleted file."""
        with self._lock:
            self.frames.forget(file_id)
            self._faces.drop(lambda k: k[0] == file_id)
            self._found.drop(lambda k: k[3] == file_id)
            self._sources.drop(lambda k: file_id in k[1])
            self._references.drop(lambda k: k[1] == file_id)


def _named_in(message: str, named: dict[str, FileRecord]) -> str | None:
    """The id of the file whose label a guard message names (longest label first)."""
    for label in sorted(named, key=len, reverse=True):
        if label in message:
            return named[label].id
    return None
