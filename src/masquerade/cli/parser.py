"""Argument parsers, built from small per-concern parent parsers, and their conversion to RunConfig.

Nothing here imports models or media libraries, so ``masquerade --version`` and ``--help`` stay fast.
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from masquerade._version import __version__
from masquerade.config import (
    DEFAULT_MAX_IMAGE_MEGAPIXELS,
    DEFAULT_MAX_VIDEO_MEGAPIXELS,
    DETECTORS,
    ENHANCERS,
    PIXEL_BOOSTS,
    PRECISIONS,
    PROVIDERS,
    RECOGNIZERS,
    SWAPPERS,
    DetectOptions,
    EncodeOptions,
    EnhanceOptions,
    LimitOptions,
    MapEntry,
    RunConfig,
    RuntimeOptions,
    SelectOptions,
    SwapOptions,
)
from masquerade.errors import UsageError


class StrictParser(argparse.ArgumentParser):
    """A (sub)command parser that reports arguments it does not know itself, with its own usage line:
    argparse would hand them up to the top-level parser, whose usage does not show the command's options."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def _faces_parser(verb: str = "swap", default: str = "reference") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group(f"which faces to {verb}")
    modes = {"reference": "faces like --reference", "all": "every face", "one": "the largest",
             "index": "the --face-index-th from the left"}
    g.add_argument("--faces", choices=tuple(modes), default=default,
                   help="; ".join(f"{m}: {text}{' (default)' if m == default else ''}"
                                  for m, text in modes.items()))
    g.add_argument("--face-index", type=int, default=0, metavar="N",
                   help="with --faces index (or --reference-frame): which face, counted from the left from "
                        "0 (default 0)")
    g.add_argument("--reference", type=Path, metavar="IMAGE",
                   help=f"with --faces reference: {verb} faces of the person in IMAGE (default: the largest "
                        "face in the first target frame that has one)")
    g.add_argument("--reference-frame", type=int, metavar="N",
                   help="with --faces reference: the person is face --face-index of frame N of the target "
                        "(from 0), so no separate photo is needed (default: --reference, or the largest "
                        "face)")
    g.add_argument("--similarity", type=float, metavar="X",
                   help="with --faces reference or --map: maximum identity distance for a match, between 0 "
                        "and 2 (default: 0.42 for dlib, 0.6 for arcface)")
    return p


MAP_HELP = """\
--map REFERENCE=SOURCE (repeatable) swaps the faces of the person in REFERENCE (a photo, or a crop
written by `masquerade faces -o`) with SOURCE's face; SOURCE+SOURCE2 uses several photos of that
source. Faces that match no reference are left alone, so -s is not needed. With -s as well, -s goes
on the faces --faces selects among those no reference claims (--faces all: everyone else; the
default: the person of --reference / --reference-frame, or else the largest other face)."""


def _map_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("per-person sources", MAP_HELP)
    g.add_argument("--map", action="append", metavar="REFERENCE=SOURCE[+SOURCE...]",
                   help="the person in REFERENCE gets SOURCE's face (repeatable; default: none, -s goes on "
                        "the faces --faces selects)")
    return p


def parse_map(value: str) -> MapEntry:
    """``REFERENCE=SOURCE[+SOURCE...]``. A path may itself hold ``=`` or ``+``: the split that names
    existing files wins, so ``me=you.jpg=them.jpg`` or ``a+b.jpg`` still work."""
    if "=" not in value:
        raise UsageError(f"--map takes REFERENCE=SOURCE, got {value!r}")
    cuts = [i for i, c in enumerate(value) if c == "="]
    cut = next((i for i in cuts if Path(value[:i]).exists()), cuts[0])
    reference, right = value[:cut], value[cut + 1:]
    sources = [right] if Path(right).exists() else right.split("+")
    if not reference or not all(sources):
        raise UsageError(f"--map takes REFERENCE=SOURCE[+SOURCE...], got {value!r}")
    return MapEntry(Path(reference), tuple(Path(s) for s in sources))


def _analysis_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("face analysis")
    g.add_argument("--detector", choices=DETECTORS, default="mesh",
                   help="face detector: embedded MediaPipe mesh (default) or SCRFD det_10g")
    g.add_argument("--recognizer", choices=RECOGNIZERS, default="dlib",
                   help="recognizer that tells people apart, for --faces reference, --map and faces "
                        "(default: embedded dlib)")
    return p


def _models_parser(swap: bool = True) -> argparse.ArgumentParser:
    """Model and runtime options; ``swap=False`` leaves out the swapper's (``enhance`` swaps nothing)
    and makes ``--enhancer`` required."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("models")
    if swap:
        g.add_argument("--swapper", choices=SWAPPERS, default="mesh",
                       help="face swapper (default: mesh, the embedded classical swapper)")
        g.add_argument("--enhancer", choices=ENHANCERS, default="none", help="face enhancer (default: none)")
    else:
        g.add_argument("--enhancer", choices=ENHANCERS[1:], required=True, help="face enhancer")
    g.add_argument("--enhancer-blend", type=float, default=0.8, metavar="F",
                   help="with --enhancer: share of the enhanced face kept, 0..1 (default 0.8)")
    g.add_argument("--enhancer-fidelity", type=float, default=0.5, metavar="F",
                   help="with --enhancer codeformer: 0 strongest restoration .. 1 closest to the input "
                        "(default 0.5)")
    if swap:
        g.add_argument("--mask", choices=("box", "mesh"), default="box",
                       help="paste-back mask of neural swappers (default: box, a feathered box)")
        g.add_argument("--pixel-boost", type=int, choices=PIXEL_BOOSTS, metavar="{256,512}",
                       help="neural swappers: run at this crop size by pixel-shuffled tiles (default: the "
                            "model's own size)")
    _runtime_arguments(g)
    return p


def _runtime_arguments(g: Any, render: bool = True) -> None:
    """Where the models run; ``render=False`` leaves out what only matters when frames are rendered."""
    g.add_argument("--execution-provider", choices=PROVIDERS, default="cpu",
                   help="where neural models run (default: cpu); never silently replaced by another")
    g.add_argument("--execution-threads", type=int, metavar="N",
                   help="inference threads, 1 to 256 (default: the runtime's own choice)")
    if render:
        g.add_argument("--torch-compile", action="store_true",
                       help="torch providers: compile the models (a minute or more of warm-up each; pays "
                            "off on long videos)")
        g.add_argument("--frame-workers", type=int, metavar="N",
                       help="threads that swap, enhance and watermark frames, 1 to 32 (default: half the "
                            "cores, 1 to 4; at least 2 for the embedded swap without an enhancer)")
        g.add_argument("--frame-batch", type=int, metavar="N",
                       help="video frames per swap batch, 1 to 256 (default: 8 on torch providers, 3 for "
                            "the embedded swap, else 1)")
        g.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="neural model arithmetic: auto (default: fp16 on torch-cuda, else the file's "
                            "own), fp32, fp16 or bf16 (torch providers), int8 (cpu: quantised once per "
                            "model and used only if its faces stay within 30 dB PSNR of fp32)")
    g.add_argument("--models-dir", type=Path, metavar="DIR",
                   help="model cache folder (default: $MASQUERADE_HOME/models or the per-user cache)")


def _output_parser() -> argparse.ArgumentParser:
    # The defaults are written out (media.options holds them; a test keeps the two equal): importing
    # the media package here would load PyAV and OpenCV for --help.
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument("--video-encoder", default="libx264", metavar="NAME",
                   help="libx264 (default), libx265, libvpx-vp9, libsvtav1 or a hardware encoder "
                        "that the local FFmpeg has")
    g.add_argument("--video-quality", type=int, metavar="N",
                   help="video quality, 0 best, CRF-like (default: CRF 18 for x264/x265, CRF 32 of 63 for "
                        "VP9, the encoder's own default for others, lowered on small frames where the "
                        "watermark needs it). The worst accepted keeps the invisible watermark readable and "
                        "depends on the encoder and frame size (libx264: 30 at 360p, 36 at 720p, 40 at "
                        "1080p)")
    g.add_argument("--video-preset", metavar="NAME",
                   help="encoder speed preset, ultrafast .. veryslow or the encoder's own names "
                        "(default: veryfast for x264/x265, cpu-used 4 for VP9, the encoder's "
                        "own default for others)")
    _trim_arguments(g, "keep")
    g.add_argument("--skip-audio", action="store_true",
                   help="leave audio out of the output video (default: audio is copied untouched)")
    g.add_argument("--image-quality", type=int, default=95, metavar="40-100",
                   help="JPEG/WebP quality of image outputs (default 95; below 40 the watermark may not "
                        "survive; PNG is lossless)")
    return p


def _trim_arguments(g: Any, verb: str) -> None:
    g.add_argument("--trim-start", type=float, metavar="SECONDS",
                   help=f"start of the target video to {verb} (default: its start)")
    g.add_argument("--trim-end", type=float, metavar="SECONDS",
                   help=f"end of the target video to {verb} (default: its end)")


def limits_parser() -> argparse.ArgumentParser:
    """``--max-image-megapixels`` and ``--max-video-megapixels`` (swap and verify take both)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("limits")
    g.add_argument("--max-image-megapixels", type=float, default=DEFAULT_MAX_IMAGE_MEGAPIXELS, metavar="MP",
                   help="refuse images larger than this, from their header, before decoding (default "
                        f"{DEFAULT_MAX_IMAGE_MEGAPIXELS:g}: about 1.2 GB of memory at the limit)")
    g.add_argument("--max-video-megapixels", type=float, default=DEFAULT_MAX_VIDEO_MEGAPIXELS, metavar="MP",
                   help="refuse videos whose frames are larger than this (default "
                        f"{DEFAULT_MAX_VIDEO_MEGAPIXELS:g}: 8K UHD, 7680x4320)")
    return p


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster (pip install 'masquerade[cluster]')")
    g.add_argument("--cluster", metavar="ray[:ADDRESS]",
                   help="run on a Ray cluster: ray starts or joins a local one, ray:auto joins a running "
                        "one, ray://HOST:PORT connects with Ray Client; videos are split at key frames "
                        "into segments done in parallel, with the same output (default: this machine)")
    g.add_argument("--cluster-workers", type=int, metavar="N",
                   help="with --cluster: workers, each loading the models once (default: as many as the "
                        "cluster holds)")
    g.add_argument("--cluster-cpus", type=int, metavar="N",
                   help="with --cluster: CPUs each worker asks for (default 2; on torch-cuda each also "
                        "takes a GPU)")
    g.add_argument("--segment-seconds", type=float, metavar="S",
                   help="with --cluster: shortest segment a video is split into, at the source's key "
                        "frames (default 4)")
    g.add_argument("--cluster-store", type=Path, metavar="DIR",
                   help="with --cluster: where finished segments wait for their output, so a run started "
                        "again redoes only what is missing (default: cluster/ in masquerade's cache "
                        "folder)")


CLUSTER_ONLY = ("cluster_workers", "cluster_cpus", "segment_seconds", "cluster_store")
"""Arguments that apply only with ``--cluster``."""


def check_cluster_args(args: argparse.Namespace) -> None:
    """The cluster's options do nothing without ``--cluster``: say so instead of ignoring them."""
    given = [f"--{name.replace('_', '-')}" for name in CLUSTER_ONLY if getattr(args, name, None) is not None]
    if getattr(args, "cluster", None) is None and given:
        raise UsageError(f"{', '.join(given)} only apply with --cluster")


def swap_option_parsers() -> list[argparse.ArgumentParser]:
    """The parent parsers of every ``swap`` option (the studio validates its REST options with them)."""
    return [_faces_parser(), _map_parser(), _analysis_parser(), _models_parser(), _output_parser(),
            limits_parser()]


TARGETS_HELP = ("image, video or folder of them; repeat -t for several. With several targets (or a "
                "folder) -o is a folder and each output is named <stem>_{}.<ext>")


def build_parser() -> argparse.ArgumentParser:
    parser = StrictParser(
        prog="masquerade",
        description="Swap faces in images and videos. Every output is watermarked and labelled as "
                    "synthetic. Only swap a real person's face with that person's consent.",
    )
    parser.add_argument("-v", "--version", action="version", version=f"masquerade {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    swap = sub.add_parser(
        "swap", help="put the source face onto faces in a target image or video",
        description="Put the face of the source photo(s) onto faces of a target image or video (or give "
                    "people their own sources with --map). The output is watermarked and carries a C2PA "
                    "label; it is written under a temporary name and renamed when complete.",
        parents=swap_option_parsers(),
    )
    swap.add_argument("-s", "--source", nargs="+", type=Path, metavar="SOURCE",
                      help="photo(s) of the face to put in; with several, the best one is used (default: "
                           "none, when every source comes from --map)")
    _target_arguments(swap, "swapped")
    enhance = sub.add_parser(
        "enhance", help="restore the faces of an image or video with a face enhancer (no swap)",
        description="Runs only the face enhancer. The output is still machine-altered: the content guard "
                    "checks it, and it is watermarked and labelled (as enhanced, not face-swapped).",
        parents=[_faces_parser("enhance", "all"), _analysis_parser(), _models_parser(swap=False),
                 _output_parser(), limits_parser()],
    )
    _target_arguments(enhance, "enhanced")
    _register_optional(sub)
    return parser


def _target_arguments(p: argparse.ArgumentParser, done: str) -> None:
    """-t (repeatable, files or folders), -o and -q of ``swap`` and ``enhance``, which both run here."""
    p.add_argument("-t", "--target", type=Path, action="append", required=True,
                   help=TARGETS_HELP.format(done))
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="where to write the result (a folder for several targets)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    _cluster_arguments(p)
    p.set_defaults(func=_run_swap)


def _run_swap(args: argparse.Namespace) -> int:
    from masquerade.cli.swap_cmd import run

    return run(args)


def _register_optional(sub: argparse._SubParsersAction) -> None:
    from masquerade.cli import bench_cmd, faces_cmd, models_cmd, serve_cmd, verify_cmd

    faces_cmd.register(sub, [_analysis_parser(), _similarity_parser(), _runtime_parser(), _trim_parser(),
                             limits_parser()])
    models_cmd.register(sub)
    verify_cmd.register(sub)
    bench_cmd.register(sub)
    serve_cmd.register(sub)


def _similarity_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--similarity", type=float, metavar="X",
                   help="maximum identity distance between two faces of one person, between 0 and 2 "
                        "(default: 0.42 for dlib, 0.6 for arcface)")
    return p


def _runtime_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    _runtime_arguments(p.add_argument_group("runtime"), render=False)
    return p


def _trim_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    _trim_arguments(p, "read")
    return p


def _options(cls: type, args: argparse.Namespace, **names: str) -> Any:
    """``cls`` built from the arguments this command has (``field=argument name``); the others keep
    their defaults, so every command converts its arguments here."""
    present = {field: getattr(args, name) for field, name in names.items() if hasattr(args, name)}
    assert set(names) <= {f.name for f in fields(cls)}, names
    return cls(**present)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The one place where command-line arguments become options."""
    maps = tuple(parse_map(value) for value in getattr(args, "map", None) or ())
    return RunConfig(
        detect=_options(DetectOptions, args, detector="detector"),
        select=replace(_options(SelectOptions, args, mode="faces", face_index="face_index",
                                reference="reference", reference_frame="reference_frame",
                                similarity="similarity"), mapping=maps),
        swap=_options(SwapOptions, args, swapper="swapper", mask="mask", pixel_boost="pixel_boost"),
        enhance=_options(EnhanceOptions, args, enhancer="enhancer", blend="enhancer_blend",
                         fidelity="enhancer_fidelity"),
        encode=_options(EncodeOptions, args, video_encoder="video_encoder", video_quality="video_quality",
                        video_preset="video_preset", trim_start="trim_start", trim_end="trim_end",
                        skip_audio="skip_audio", image_quality="image_quality"),
        runtime=_options(RuntimeOptions, args, execution_provider="execution_provider",
                         execution_threads="execution_threads", models_dir="models_dir",
                         precision="precision", frame_batch="frame_batch", torch_compile="torch_compile",
                         frame_workers="frame_workers"),
        recognizer=getattr(args, "recognizer", RunConfig().recognizer),
        limits=limits_from_args(args),
    )


def limits_from_args(args: argparse.Namespace) -> LimitOptions:
    return _options(LimitOptions, args, max_image_megapixels="max_image_megapixels",
                    max_video_megapixels="max_video_megapixels")
