"""The driver of a cluster run: plans the work, hands it to workers, keeps what they finish, joins.

One run takes any number of targets. Each video is split into segments at its key frames
(``masquerade.split``); a short video is one segment, an image one task. The driver decides the
person once (from the reference image, or per video by tracking from its first frame), then keeps
each worker a task or two ahead (so none waits for its next segment's packets) until every task is
done. A finished segment goes into the store at once; when a video's last one is in, a driver thread
joins them by stream copy with the source's audio, labels the file once and moves it into place, while
the workers go on with the next files. A run that dies and is started again finds the finished
segments in the store and hands out only the missing ones.

Tasks ask Ray for what they use: each worker ``cpus_per_worker`` CPUs, and one GPU on ``torch-cuda``.
Workers are actors: models load once per worker, not per task; Ray restarts a worker whose process
dies and runs its tasks again.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from masquerade.api import (
    RunSummary,
    check_request,
    no_face_warning,
    read_still,
    reference_photo,
    write_image_output,
)
from masquerade.cluster.connect import connected
from masquerade.cluster.options import ClusterOptions
from masquerade.cluster.pool import WorkerPool
from masquerade.cluster.store import JobFolder, SegmentStore, settings_digest
from masquerade.cluster.summary import ClusterHooks, ClusterSummary, FileFailure
from masquerade.cluster.worker import Chunk
from masquerade.config import RunConfig, validate
from masquerade.errors import ClusterError, ContentRefused, MasqueradeError, UsageError
from masquerade.media.image import read_image
from masquerade.media.segments import Segment, SegmentPlan, cut_segment, join_segments
from masquerade.provenance.c2pa_label import label_identity
from masquerade.provenance.keys import SigningIdentity
from masquerade.split import Person, SegmentResult, plan_video

AHEAD = 2
"""Tasks handed to each worker at once: one running, one with its packets already there."""


@dataclass
class _Job:
    target: Path
    output: Path
    identity: SigningIdentity | None
    """Signs the output's label: this machine's key (resolved before the work, so a bad one fails first)."""
    failed: bool = field(default=False, init=False)


@dataclass
class _Video(_Job):
    folder: JobFolder = field(kw_only=True)
    segments: tuple[Segment, ...] = field(kw_only=True)
    plan: SegmentPlan = field(kw_only=True)
    person: Person | None = None
    searched: int = -1
    """Last segment the search for the person has read through (-1: none yet)."""
    results: dict[int, SegmentResult] = field(default_factory=dict)


@dataclass
class _Image(_Job):
    pass


@dataclass
class _Task:
    kind: str  # "person" | "segment" | "image"
    job: _Video | _Image
    segment: Segment | None = None


def swap(
    sources: Sequence[Path | str],
    targets: Sequence[Path | str] | Path | str,
    outputs: Sequence[Path | str] | Path | str,
    config: RunConfig | None = None,
    options: ClusterOptions | None = None,
    hooks: ClusterHooks | None = None,
) -> ClusterSummary:
    """``masquerade.swap`` for one target or many, on a Ray cluster, with the same outputs.

    Each output is watermarked and labelled and appears atomically once complete, as on one machine.
    """
    config = config or RunConfig()
    options = options or ClusterOptions()
    hooks = hooks or ClusterHooks()
    target_list = [Path(targets)] if isinstance(targets, str | Path) else [Path(t) for t in targets]
    output_list = [Path(outputs)] if isinstance(outputs, str | Path) else [Path(o) for o in outputs]
    source_paths = [Path(s) for s in sources]
    _check_batch(target_list, output_list)
    validate(config)
    # The sources and the reference are read here (within the image limit) and travel to the workers.
    # The execution provider is checked where it runs: on the workers, when they load the models.
    max_pixels = config.limits.max_image_pixels
    source_images = [(str(p), read_image(p, max_pixels).image) for p in source_paths]
    reference_image = reference_photo(config)

    started = time.perf_counter()
    store = SegmentStore(options.store or _default_store())
    settings = settings_digest(config, source_paths, options.segment_seconds, options.warmup_seconds)
    summary = ClusterSummary()
    clock = _Clock(summary.timings)
    jobs: list[_Video | _Image] = []
    for target, output in zip(target_list, output_list, strict=True):
        try:
            with clock("plan"):
                jobs.append(_plan_job(source_paths, target, output, config, options, store, settings,
                                      len(target_list) == 1))
        except MasqueradeError as error:
            summary.failures.append(FileFailure(target, output, error))
            hooks.on_failure(summary.failures[-1])
    videos = [j for j in jobs if isinstance(j, _Video)]
    summary.segments = sum(len(v.segments) for v in videos)
    summary.reused = sum(len(v.results) for v in videos)
    total = sum(v.plan.frames for v in videos) + len(jobs) - len(videos)
    hooks.on_start(len(jobs), total, sum(r.frames for v in videos for r in v.results.values()))

    if not jobs:
        summary.seconds = time.perf_counter() - started
        hooks.on_end(summary)
        return summary
    with connected(options.address) as ray, tempfile.TemporaryDirectory(prefix="masquerade-cluster-") as tmp:
        with clock("start"):
            pool = WorkerPool(ray, config, source_images, options, _count_tasks(jobs))
        try:
            summary.workers = len(pool.actors)
            for notice in pool.infos[0].notices:
                hooks.on_notice(notice)
            hooks.on_workers(pool.infos)
            run = _Run(ray, pool, config, Path(tmp), hooks, summary, started, clock)
            run.execute(jobs, reference_image)
        finally:
            pool.shutdown()
    summary.files.sort(key=lambda f: output_list.index(f.output))  # done in the order of the targets
    summary.failures.sort(key=lambda f: output_list.index(f.output))
    summary.seconds = time.perf_counter() - started
    hooks.on_end(summary)
    return summary


class _Run:
    """The scheduling loop of one run."""

    def __init__(self, ray: ModuleType, pool: WorkerPool, config: RunConfig, tmp: Path,
                 hooks: ClusterHooks, summary: ClusterSummary, started: float, clock: _Clock) -> None:
        self.ray, self.pool, self.config, self.tmp = ray, pool, config, tmp
        self.hooks, self.summary, self.started, self.clock = hooks, summary, started, clock
        self.ready: deque[_Task] = deque()
        self.running: dict[Any, _Task] = {}
        self.writing: list[tuple[Future[RunSummary], _Video | _Image]] = []
        self.person: Person | None = None

    def execute(self, jobs: list[_Video | _Image], reference_image: Any) -> None:
        with ThreadPoolExecutor(1, thread_name_prefix="masquerade-join") as writer:
            self.writer = writer
            try:
                self._queue(jobs, reference_image)
                self._loop()
            except BaseException:
                for future, _ in self.writing:
                    future.cancel()
                raise

    def _queue(self, jobs: list[_Video | _Image], reference_image: Any) -> None:
        select = self.config.select
        if select.mode != "reference":
            self.person = Person(None)
        elif reference_image is not None:
            # Decided once for every target, on one worker (the driver loads no models).
            self.person = self.pool.call("decide_person", reference_image, None, None, None)
        for job in jobs:
            if isinstance(job, _Image):
                self.ready.append(_Task("image", job))
                continue
            job.person = self.person
            if len(job.results) == len(job.segments):
                self._join(job)  # all finished by an earlier run: only the join is left
            elif job.person is None:
                self.ready.append(self._person_task(job))
            else:
                self._queue_segments(job)

    def _loop(self) -> None:
        ray = self.ray
        while self.ready or self.running or self.writing:
            while self.ready and len(self.running) < AHEAD * len(self.pool.actors):
                task = self.ready.popleft()
                if task.job.failed:
                    continue
                try:
                    self.running[self._submit(task)] = task
                except MasqueradeError as error:  # e.g. a segment's packets cannot be cut out
                    self._fail(task.job, error)
            if self.running:
                done, _ = ray.wait(list(self.running), num_returns=1, timeout=0.2)
                for ref in done:
                    task = self.running.pop(ref)
                    self.pool.release(ref)
                    try:
                        result = self.pool.get(ref)
                    except (ClusterError, UsageError):
                        raise  # the cluster itself, or a request no file can satisfy: stop the run
                    except MasqueradeError as error:
                        self._fail(task.job, error)
                        continue
                    if not task.job.failed:
                        self._finished(task, result)
            for future, job in [(f, j) for f, j in self.writing if f.done()]:
                self.writing.remove((future, job))
                try:
                    self.summary.files.append(future.result())
                except MasqueradeError as error:
                    self._fail(job, error)
                    continue
                self.hooks.on_file(self.summary.files[-1])
            if not self.running and self.writing:
                time.sleep(0.05)

    def _fail(self, job: _Video | _Image, error: MasqueradeError) -> None:
        if job.failed:
            return
        job.failed = True
        if isinstance(job, _Video) and isinstance(error, ContentRefused):
            job.folder.remove()  # nothing made from refused content is kept
        self.summary.failures.append(FileFailure(job.target, job.output, error))
        self.hooks.on_failure(self.summary.failures[-1])

    # -- tasks -----------------------------------------------------------------------------------

    def _person_task(self, video: _Video) -> _Task:
        # Read from the first frame through twice as many segments each time: a face is usually in
        # the first one, and a video without faces costs at most two reads of itself.
        last = min(len(video.segments) - 1, 2 * video.searched + 1)
        return _Task("person", video, video.plan.opening(last))

    def _queue_segments(self, video: _Video) -> None:
        missing = [s for s in video.segments if s.number not in video.results]
        for segment in missing:
            self.ready.append(_Task("segment", video, segment))
        if not missing:
            self._join(video)

    def _submit(self, task: _Task) -> Any:
        if task.kind == "image":
            assert isinstance(task.job, _Image)
            loaded = read_still(task.job.target, self.config)
            return self.pool.submit("swap_image", self.person or Person(None), loaded.image, loaded.grey)
        video = task.job
        assert isinstance(video, _Video) and task.segment is not None
        chunk = self._chunk(video, task.segment)
        if task.kind == "person":
            return self.pool.submit("decide_person", None, chunk, video.plan, task.segment)
        return self.pool.submit("swap_segment", video.person, chunk, video.plan, task.segment,
                                video.output.suffix.lower())

    def _chunk(self, video: _Video, segment: Segment) -> Any:
        with self.clock("cut"):
            path = cut_segment(video.target, segment, self.tmp)
            try:
                return self.ray.put(Chunk(path.read_bytes(), path.suffix))
            finally:
                path.unlink()

    def _finished(self, task: _Task, result: Any) -> None:
        if task.kind == "image":
            assert isinstance(task.job, _Image)
            image, swapped = result
            self.writing.append((self.writer.submit(self._write_image, task.job, image, swapped), task.job))
            self.hooks.on_progress(1)
            return
        video = task.job
        assert isinstance(video, _Video) and task.segment is not None
        if task.kind == "person":
            video.searched = self._last_segment(video, task.segment)
            if result is None and video.searched < len(video.segments) - 1:
                self.ready.appendleft(self._person_task(video))
                return
            video.person = result if result is not None else Person(None, found=False)
            self._queue_segments(video)
            return
        segment_result, data = result
        with self.clock("store"):
            video.folder.put(task.segment, data, segment_result)
        self.clock.add("segments", segment_result.seconds)
        self.clock.add("warmup", segment_result.warmup_seconds)
        video.results[task.segment.number] = segment_result
        self.summary.computed += 1
        self.hooks.on_progress(task.segment.count)
        if len(video.results) == len(video.segments):
            self._join(video)

    @staticmethod
    def _last_segment(video: _Video, span: Segment) -> int:
        return next(s.number for s in video.segments if s.end_pts == span.end_pts)

    def _join(self, video: _Video) -> None:
        self.writing.append((self.writer.submit(self._write_video, video), video))

    # -- writing (on the join thread) --------------------------------------------------------------

    def _write_video(self, video: _Video) -> RunSummary:
        files = [video.folder.segment_file(s) for s in video.segments]
        with self.clock("join"):
            frames = join_segments(video.target, files, video.output, self.config.encode,
                                   self.config.limits.max_video_pixels, video.identity)
        if frames != video.plan.frames:  # never reached with a consistent store: a loud check
            raise ClusterError(f"{video.output}: joined {frames} frames, planned {video.plan.frames}")
        results = [video.results[s.number] for s in video.segments]
        summary = RunSummary(output=video.output, kind="video", frames=frames,
                             faces_swapped=sum(r.faces_swapped for r in results),
                             seconds=time.perf_counter() - self.started)
        for result in results:
            for stage, seconds in result.stage_seconds.items():
                summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + seconds
        summary.warnings.extend(self.pool.infos[0].warnings)
        if summary.faces_swapped == 0:
            summary.warnings.append(no_face_warning(video.target))
        video.folder.remove()
        return summary

    def _write_image(self, job: _Image, image: Any, swapped: int) -> RunSummary:
        loaded = read_still(job.target, self.config)  # for its alpha: only the picture went to a worker
        write_image_output(job.output, image, loaded.alpha, self.config.encode.image_quality, job.identity)
        summary = RunSummary(output=job.output, kind="image", frames=1, faces_swapped=swapped,
                             seconds=time.perf_counter() - self.started)
        summary.warnings.extend(self.pool.infos[0].warnings)
        if swapped == 0:
            summary.warnings.append(no_face_warning(job.target))
        return summary


class _Clock:
    """Adds up seconds per named part of the driver's work (a join thread adds too: one lock)."""

    def __init__(self, totals: dict[str, float]) -> None:
        self.totals = totals
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.totals[name] = self.totals.get(name, 0.0) + seconds

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)


def _count_tasks(jobs: list[_Video | _Image]) -> int:
    return sum(1 if isinstance(j, _Image) else len(j.segments) - len(j.results) for j in jobs)


def _plan_job(sources: list[Path], target: Path, output: Path, config: RunConfig, options: ClusterOptions,
              store: SegmentStore, settings: str, single: bool) -> _Video | _Image:
    """The same checks as ``masquerade.swap`` makes before any work, then the video's plan and what
    the store already holds of it."""
    kind = check_request(sources, target, output, config.limits)
    if single:  # in a batch of images and videos, each kind's options are for the targets of that kind
        validate(config, kind)
    identity = label_identity(output)
    if kind == "image":
        read_still(target, config)
        return _Image(target, output, identity)
    plan = plan_video(target, config, options.segment_seconds, options.warmup_seconds)
    folder = store.job(target, settings, output.suffix)
    video = _Video(target, output, identity, folder=folder, segments=plan.segments, plan=plan)
    for segment in plan.segments:
        if folder.has(segment):
            video.results[segment.number] = folder.result(segment)
    return video


def _check_batch(targets: list[Path], outputs: list[Path]) -> None:
    if not targets:
        raise UsageError("give at least one target")
    if len(targets) != len(outputs):
        raise UsageError(f"{len(targets)} targets but {len(outputs)} outputs")
    resolved = [o.resolve() for o in outputs]
    if len(set(resolved)) != len(resolved):
        raise UsageError("two targets would be written to the same output")
    inputs = {t.resolve() for t in targets}
    for output in outputs:
        if output.resolve() in inputs:
            raise UsageError(f"the output {output} is one of the targets")


def _default_store() -> Path:
    from masquerade.models.store import default_home

    return default_home() / "cluster"


__all__ = ["swap"]
