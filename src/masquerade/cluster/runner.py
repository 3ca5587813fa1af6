"""The driver of a cluster run: plans the work, hands it to workers, keeps what they finish, joins.

One run takes any number of targets. Each video is split into segments at its key frames
(``masquerade.split``); a short video is one segment, an image one task. The driver loads no models:
one worker decides the run's identities (``--reference``, ``--map``) for all of them; the person of a
``--reference-frame`` is decided once per target, and without any reference once per video by
tracking from its first frame. The driver then keeps each worker a task or two ahead (so none waits
for its next segment's packets) until every task is done. A finished segment goes into the store at
once; when a video's last one is in, a driver thread joins them by stream copy with the source's
audio, labels the file once with what all its segments did and moves it into place, while the
workers go on with the next files. A run that dies and is started again finds the finished segments
in the store and hands out only the missing ones.

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
    CheckedOutput,
    Job,
    PathLike,
    RunSummary,
    SourceMapping,
    SourcePhotos,
    check_output,
    enhance_config,
    no_face_warning,
    read_still,
    reference_frame,
    with_mapping,
    write_still,
)
from masquerade.batch import FileResult, plan_batch
from masquerade.cluster.connect import connected
from masquerade.cluster.options import ClusterOptions, validate_cluster
from masquerade.cluster.pool import WorkerPool
from masquerade.cluster.store import JobFolder, SegmentStore, settings_digest
from masquerade.cluster.summary import ClusterHooks, ClusterSummary
from masquerade.cluster.worker import Chunk
from masquerade.config import NO_SWAP, RunConfig
from masquerade.errors import ClusterError, ContentRefused, MasqueradeError, UsageError
from masquerade.media.segments import Segment, SegmentPlan, cut_segment, join_segments
from masquerade.split import Person, SegmentResult, joined_edit, plan_video

AHEAD = 2
"""Tasks handed to each worker at once: one running, one with its packets already there."""


@dataclass
class _Target:
    target: Path
    output: Path
    checked: CheckedOutput
    """Its kind, the run's options for it and the key that signs its label."""
    person: Person | None = None
    error: MasqueradeError | None = field(default=None, init=False)

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass
class _Video(_Target):
    folder: JobFolder = field(kw_only=True)
    plan: SegmentPlan = field(kw_only=True)
    searched: int = -1
    """Last segment the search for the person has read through (-1: none yet)."""
    results: dict[int, SegmentResult] = field(default_factory=dict)

    @property
    def segments(self) -> tuple[Segment, ...]:
        return self.plan.segments


@dataclass
class _Image(_Target):
    pass


@dataclass
class _Task:
    kind: str  # "frame" (a --reference-frame's person) | "person" (searched for) | "segment" | "image"
    job: _Video | _Image
    segment: Segment | None = None


def swap(
    sources: Sequence[PathLike], target: PathLike, output: PathLike, config: RunConfig | None = None,
    options: ClusterOptions | None = None, hooks: ClusterHooks | None = None,
    mapping: SourceMapping | None = None,
) -> ClusterSummary:
    """``masquerade.swap`` on a Ray cluster, with the same output: a long video is split into segments
    done in parallel. The target's error is raised as on one machine."""
    config = with_mapping(config or RunConfig(), mapping)
    if config.swap.swapper == NO_SWAP:
        raise UsageError("swap needs a swapper; to only enhance faces, use enhance()")
    return _single(config, [Path(s) for s in sources], Path(target), Path(output), options, hooks)


def enhance(
    target: PathLike, output: PathLike, config: RunConfig | None = None,
    options: ClusterOptions | None = None, hooks: ClusterHooks | None = None,
) -> ClusterSummary:
    """``masquerade.enhance`` on a Ray cluster, with the same output."""
    return _single(enhance_config(config), [], Path(target), Path(output), options, hooks)


def swap_many(
    sources: Sequence[PathLike], targets: Sequence[PathLike], folder: PathLike,
    config: RunConfig | None = None, options: ClusterOptions | None = None,
    hooks: ClusterHooks | None = None, mapping: SourceMapping | None = None,
) -> ClusterSummary:
    """``masquerade.swap_many`` on a Ray cluster: the files (and the segments of long videos) are
    spread over the workers. A file that fails is reported in the summary; the others go on."""
    config = with_mapping(config or RunConfig(), mapping)
    plan = plan_batch("swap", config, targets, Path(folder))
    return run(config, [Path(s) for s in sources], plan, options, hooks)


def enhance_many(
    targets: Sequence[PathLike], folder: PathLike, config: RunConfig | None = None,
    options: ClusterOptions | None = None, hooks: ClusterHooks | None = None,
) -> ClusterSummary:
    """``masquerade.enhance_many`` on a Ray cluster."""
    config = enhance_config(config)
    return run(config, [], plan_batch("enhance", config, targets, Path(folder)), options, hooks)


def _single(config: RunConfig, sources: list[Path], target: Path, output: Path,
            options: ClusterOptions | None, hooks: ClusterHooks | None) -> ClusterSummary:
    check_output(config, sources, target, output)  # as one machine checks a single target
    errors: list[MasqueradeError] = []
    summary = run(config, sources, [(target, output)], options, hooks, errors)
    if errors:
        raise errors[0]
    return summary


def run(
    config: RunConfig, sources: Sequence[Path], pairs: Sequence[tuple[Path, Path]],
    options: ClusterOptions | None = None, hooks: ClusterHooks | None = None,
    errors: list[MasqueradeError] | None = None,
) -> ClusterSummary:
    """Every (target, output) pair of ``pairs`` on the cluster (``swap_many``'s work, its targets already
    planned). Each output is watermarked and labelled and appears atomically once complete, as on one
    machine. ``errors`` receives the failed targets' errors."""
    options = options or ClusterOptions()
    hooks = hooks or ClusterHooks()
    validate_cluster(options)
    Job.check(config, sources)
    # The photos are read here (within the image limit) and travel to the workers. The execution
    # provider is checked where it runs: on the workers, when they load the models.
    photos = SourcePhotos.read(config, sources)
    started = time.perf_counter()
    store = SegmentStore(options.store or _default_store())
    settings = settings_digest(config, sources, options.segment_seconds, options.warmup_seconds)
    summary = ClusterSummary()
    clock = _Clock(summary.timings)
    jobs: list[_Video | _Image] = []
    failed: dict[Path, FileResult] = {}
    for target, output in pairs:
        try:
            with clock("plan"):
                jobs.append(_plan(config, photos, target, output, options, store, settings))
        except MasqueradeError as error:
            failed[output] = FileResult.failure(target, output, error)
            if errors is not None:
                errors.append(error)
            hooks.on_file_end(failed[output])
    videos = [j for j in jobs if isinstance(j, _Video)]
    summary.segments = sum(len(v.segments) for v in videos)
    summary.reused = sum(len(v.results) for v in videos)
    total = sum(v.plan.frames for v in videos) + len(jobs) - len(videos)
    hooks.on_start(len(jobs), total, sum(r.frames for v in videos for r in v.results.values()))

    results: dict[Path, FileResult] = dict(failed)
    if jobs:
        with connected(options.address) as ray, \
                tempfile.TemporaryDirectory(prefix="masquerade-cluster-") as tmp:
            with clock("start"):
                pool = WorkerPool(ray, config, photos, options, _count_tasks(jobs))
            try:
                summary.workers = len(pool.actors)
                for notice in pool.infos[0].notices:
                    hooks.on_notice(notice)
                hooks.on_workers(pool.infos)
                work = _Run(ray, pool, config, bool(photos.sources), Path(tmp), hooks, summary, started,
                            clock)
                work.execute(jobs, results)
            finally:
                pool.shutdown()
        if errors is not None:
            errors.extend(j.error for j in jobs if j.error is not None)
    summary.results = [results[output] for _, output in pairs if output in results]  # the targets' order
    summary.seconds = time.perf_counter() - started
    hooks.on_end(summary)
    return summary


class _Run:
    """The scheduling loop of one run."""

    def __init__(self, ray: ModuleType, pool: WorkerPool, config: RunConfig, adopts: bool, tmp: Path,
                 hooks: ClusterHooks, summary: ClusterSummary, started: float, clock: _Clock) -> None:
        """``adopts``: whether ``--faces reference`` without a reference takes a video's first face
        (there is a source for it)."""
        self.ray, self.pool, self.config, self.adopts, self.tmp = ray, pool, config, adopts, tmp
        self.hooks, self.summary, self.started, self.clock = hooks, summary, started, clock
        self.action = "enhance" if config.swap.swapper == NO_SWAP else "swap"
        self.ready: deque[_Task] = deque()
        self.running: dict[Any, _Task] = {}
        self.writing: list[tuple[Future[RunSummary], _Video | _Image]] = []

    def execute(self, jobs: list[_Video | _Image], results: dict[Path, FileResult]) -> None:
        self.results = results
        with ThreadPoolExecutor(1, thread_name_prefix="masquerade-join") as writer:
            self.writer = writer
            try:
                for job in jobs:
                    self._queue(job)
                self._loop()
            except BaseException:
                for future, _ in self.writing:
                    future.cancel()
                raise

    def _queue(self, job: _Video | _Image) -> None:
        """The job's first task: deciding its person when that needs a worker, else its work."""
        select = self.config.select
        if select.mode != "reference":
            job.person = Person(None)
        elif self.pool.identities.reference is not None:
            job.person = Person(self.pool.identities.reference)  # --reference, decided for the run
        elif select.reference_frame is not None:
            self.ready.append(_Task("frame", job))
            return
        elif isinstance(job, _Image) or not self.adopts:
            # An image adopts its own largest face, as on one machine; with no -s source (only --map
            # people are swapped) nobody is adopted.
            job.person = Person(None)
        else:
            self.ready.append(self._person_task(job))
            return
        self._queue_work(job)

    def _queue_work(self, job: _Video | _Image) -> None:
        if isinstance(job, _Image):
            self.ready.append(_Task("image", job))
            return
        missing = [s for s in job.segments if s.number not in job.results]
        for segment in missing:
            self.ready.append(_Task("segment", job, segment))
        if not missing:
            self._join(job)  # all finished by an earlier run: only the join is left

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
                    except ClusterError:
                        raise  # the cluster itself: stop the run
                    except MasqueradeError as error:
                        self._fail(task.job, error)
                        continue
                    if not task.job.failed:
                        self._finished(task, result)
            for future, job in [(f, j) for f, j in self.writing if f.done()]:
                self.writing.remove((future, job))
                try:
                    self._done(job, FileResult(job.target, job.output, summary=future.result()))
                except MasqueradeError as error:
                    self._fail(job, error)
            if not self.running and self.writing:
                time.sleep(0.05)

    def _done(self, job: _Video | _Image, result: FileResult) -> None:
        self.results[job.output] = result
        self.hooks.on_file_end(result)

    def _fail(self, job: _Video | _Image, error: MasqueradeError) -> None:
        if job.failed:
            return
        job.error = error
        if isinstance(job, _Video) and isinstance(error, ContentRefused):
            job.folder.remove()  # nothing made from refused content is kept
        self._done(job, FileResult.failure(job.target, job.output, error))

    # -- tasks -----------------------------------------------------------------------------------

    def _person_task(self, video: _Video) -> _Task:
        # Read from the first frame through twice as many segments each time: a face is usually in
        # the first one, and a video without faces costs at most two reads of itself.
        last = min(len(video.segments) - 1, 2 * video.searched + 1)
        return _Task("person", video, video.plan.opening(last))

    def _submit(self, task: _Task) -> Any:
        job = task.job
        if task.kind == "frame":
            still = read_still(job.target, job.checked.config) if isinstance(job, _Image) else None
            frame = reference_frame(job.target, job.checked.kind, None if still is None else still.image,
                                    job.checked.config)
            assert frame is not None
            return self.pool.submit("frame_reference", *frame)
        if task.kind == "image":
            loaded = read_still(job.target, job.checked.config)
            return self.pool.submit("swap_image", job.person, loaded.image, loaded.grey)
        assert isinstance(job, _Video) and task.segment is not None
        chunk = self._chunk(job, task.segment)
        if task.kind == "person":
            return self.pool.submit("decide_person", chunk, job.plan, task.segment)
        return self.pool.submit("swap_segment", job.person, chunk, job.plan, task.segment,
                                job.output.suffix.lower())

    def _chunk(self, video: _Video, segment: Segment) -> Any:
        with self.clock("cut"):
            path = cut_segment(video.target, segment, self.tmp)
            try:
                return self.ray.put(Chunk(path.read_bytes(), path.suffix))
            finally:
                path.unlink()

    def _finished(self, task: _Task, result: Any) -> None:
        job = task.job
        if task.kind == "frame":
            job.person = result
            self._queue_work(job)
        elif task.kind == "image":
            assert isinstance(job, _Image)
            image, swapped = result
            self.writing.append((self.writer.submit(self._write_image, job, image, swapped), job))
            self.hooks.on_progress(1)
        elif task.kind == "person":
            assert isinstance(job, _Video) and task.segment is not None
            job.searched = next(s.number for s in job.segments if s.end_pts == task.segment.end_pts)
            if result is None and job.searched < len(job.segments) - 1:
                self.ready.appendleft(self._person_task(job))
                return
            job.person = result if result is not None else Person(None, found=False)
            self._queue_work(job)
        else:
            self._segment_done(task, result)

    def _segment_done(self, task: _Task, result: tuple[SegmentResult, bytes]) -> None:
        video = task.job
        assert isinstance(video, _Video) and task.segment is not None
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

    def _join(self, video: _Video) -> None:
        self.writing.append((self.writer.submit(self._write_video, video), video))

    # -- writing (on the join thread) --------------------------------------------------------------

    def _write_video(self, video: _Video) -> RunSummary:
        files = [video.folder.segment_file(s) for s in video.segments]
        results = [video.results[s.number] for s in video.segments]
        edit = joined_edit(results, self.action)  # type: ignore[arg-type]
        config = video.checked.config
        with self.clock("join"):
            frames = join_segments(video.target, files, video.output, config.encode, edit,
                                   config.limits.max_video_pixels, video.checked.identity)
        if frames != video.plan.frames:  # never reached with a consistent store: a loud check
            raise ClusterError(f"{video.output}: joined {frames} frames, planned {video.plan.frames}")
        summary = self._summary(video, frames, edit.faces_replaced)
        for result in results:
            for stage, seconds in result.stage_seconds.items():
                summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + seconds
        video.folder.remove()
        return summary

    def _write_image(self, job: _Image, image: Any, swapped: int) -> RunSummary:
        config = job.checked.config
        loaded = read_still(job.target, config)  # for its alpha: only the picture went to a worker
        write_still(job.output, image, loaded.alpha, swapped, config.encode, job.checked.identity,
                    self.action)  # type: ignore[arg-type]
        return self._summary(job, 1, swapped)

    def _summary(self, job: _Video | _Image, frames: int, swapped: int) -> RunSummary:
        summary = RunSummary(output=job.output, kind=job.checked.kind, frames=frames, faces_swapped=swapped,
                             seconds=time.perf_counter() - self.started, warnings=list(self.pool.warnings),
                             action=self.action)
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


def _plan(config: RunConfig, photos: SourcePhotos, target: Path, output: Path, options: ClusterOptions,
          store: SegmentStore, settings: str) -> _Video | _Image:
    """The checks one machine makes of a target before its work (``Job.run``), then the video's plan
    and what the store already holds of it."""
    checked = check_output(config, photos.paths, target, output, in_batch=True)
    if checked.kind == "image":
        read_still(target, checked.config)
        return _Image(target, output, checked)
    plan = plan_video(target, checked.config, options.segment_seconds, options.warmup_seconds)
    folder = store.job(target, settings, output.suffix)
    video = _Video(target, output, checked, folder=folder, plan=plan)
    for segment in plan.segments:
        if folder.has(segment):
            video.results[segment.number] = folder.result(segment)
    return video


def _default_store() -> Path:
    from masquerade.models.store import default_home

    return default_home() / "cluster"


__all__ = ["enhance", "enhance_many", "run", "swap", "swap_many"]
