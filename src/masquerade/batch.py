"""Many targets in one run: ``swap_many`` / ``enhance_many`` (``-t`` several times, or a folder).

The models are loaded and the sources prepared once; each target is then its own job: one that fails
(unreadable, refused, no face...) is reported and the others go on. Outputs go into one folder as
``<stem>_swapped.<ext>`` (``<stem>_enhanced.<ext>`` when enhancing), in the target's own format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from masquerade.api import PathLike, RunHooks, RunSummary, SourceMapping, enhance_config, with_mapping
from masquerade.config import RunConfig, validate
from masquerade.errors import MasqueradeError, UsageError
from masquerade.media.options import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from masquerade.pipeline import Pipeline

SUFFIXES = {"swap": "_swapped", "enhance": "_enhanced"}


@dataclass(frozen=True)
class FileResult:
    target: Path
    output: Path
    summary: RunSummary | None = None
    error: str | None = None
    """One line saying why this file failed (None when it succeeded)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, target: Path, output: Path, error: Exception) -> FileResult:
        text = str(error) or type(error).__name__
        return cls(target, output, error=text if str(target) in text else f"{target}: {text}")


@dataclass
class BatchSummary:
    results: list[FileResult] = field(default_factory=list)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if not r.ok]

    @property
    def done(self) -> list[FileResult]:
        return [r for r in self.results if r.ok]


class BatchHooks(RunHooks):
    """``RunHooks`` for each file's run, plus hooks around each file."""

    def on_batch_start(self, total: int) -> None:
        """Called once, with the number of files, before the models load."""

    def on_file_start(self, index: int, target: Path, output: Path) -> None:
        """Called before each file (``index`` counts from 0)."""

    def on_file_end(self, result: FileResult) -> None:
        """Called after each file, whether it succeeded or failed."""


def expand_targets(targets: Sequence[PathLike]) -> list[Path]:
    """Files given and the images and videos directly inside folders given (sorted by name; hidden files
    and other extensions in a folder are skipped), each once, in order."""
    found: list[Path] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            media = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS))
            if not media:
                raise UsageError(f"the folder {path} holds no image or video")
            found += media
        else:
            found.append(path)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def plan_outputs(targets: Sequence[Path], folder: Path, action: str) -> list[tuple[Path, Path]]:
    """(target, output) pairs: ``folder/<stem>_swapped.<ext>``. Two targets that would write one file,
    or a target that is another's output, are a UsageError (before anything is written)."""
    suffix = SUFFIXES[action]
    pairs = [(t, folder / f"{t.stem}{suffix}{t.suffix}") for t in targets]
    outputs: dict[Path, Path] = {}
    for target, output in pairs:
        key = output.resolve()
        if key in outputs:
            raise UsageError(f"{outputs[key]} and {target} would both be written to {output}")
        outputs[key] = target
    # A folder processed into itself: the outputs of an earlier run are not new targets.
    return [(t, o) for t, o in pairs if t.resolve() not in outputs]


def swap_many(
    sources: Sequence[PathLike],
    targets: Sequence[PathLike],
    folder: PathLike,
    config: RunConfig | None = None,
    hooks: BatchHooks | None = None,
    mapping: SourceMapping | None = None,
) -> BatchSummary:
    """``swap`` every target (files, or folders of images and videos) into ``folder``."""
    return _run_many("swap", with_mapping(config or RunConfig(), mapping), [Path(s) for s in sources],
                     targets, Path(folder), hooks or BatchHooks())


def enhance_many(targets: Sequence[PathLike], folder: PathLike, config: RunConfig | None = None,
                 hooks: BatchHooks | None = None) -> BatchSummary:
    """``enhance`` every target (files, or folders of images and videos) into ``folder``."""
    return _run_many("enhance", enhance_config(config), [], targets, Path(folder), hooks or BatchHooks())


def plan_batch(action: str, config: RunConfig, targets: Sequence[PathLike],
               folder: Path) -> list[tuple[Path, Path]]:
    """The (target, output) pairs of a batch into ``folder``, checked before any model loads: the
    folder, the outputs' names, the options (for the kinds of target the batch has) and the signing
    key. Creates the folder."""
    from masquerade.provenance.c2pa_label import label_identity

    if folder.exists() and not folder.is_dir():
        raise UsageError(f"the output {folder} is a file; with several targets it must be a folder")
    plan = plan_outputs(expand_targets(targets), folder, action)
    kinds = {"image" if t.suffix.lower() in IMAGE_EXTENSIONS else "video" for t, _ in plan}
    if len(kinds) == 1:  # an option for the other kind of target would apply to none of them
        validate(config, kinds.pop())  # type: ignore[arg-type]
    for _, output in plan:  # a damaged signing key stops the batch before any model loads
        label_identity(output)
    folder.mkdir(parents=True, exist_ok=True)
    return plan


def _run_many(action: str, config: RunConfig, sources: list[Path], targets: Sequence[PathLike],
              folder: Path, hooks: BatchHooks) -> BatchSummary:
    from masquerade.api import Job

    plan = plan_batch(action, config, targets, folder)
    hooks.on_batch_start(len(plan))
    job = Job.prepare(config, sources, hooks, Pipeline(config, on_notice=hooks.on_notice))
    summary = BatchSummary()
    for index, (target, output) in enumerate(plan):
        hooks.on_file_start(index, target, output)
        try:
            result = FileResult(target, output, summary=job.run(target, output))
        except MasqueradeError as error:
            result = FileResult.failure(target, output, error)
        summary.results.append(result)
        hooks.on_file_end(result)
    return summary


__all__ = ["BatchHooks", "BatchSummary", "FileResult", "enhance_many", "expand_targets", "plan_batch",
           "plan_outputs", "swap_many"]
