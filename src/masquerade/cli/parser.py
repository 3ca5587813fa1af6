"""Argument parsers, built from small per-concern parent parsers, and their conversion to RunConfig.

Nothing here imports models or media libraries, so ``masquerade --version`` and ``--help`` stay fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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


def _faces_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("which faces to swap")
    g.add_argument("--faces", choices=("reference", "all", "one", "index"), default="reference",
                   help="reference: faces like --reference (default); all; one: the largest; "
                        "index: the --face-index-th from the left")
    g.add_argument("--face-index", type=int, default=0, metavar="N",
                   help="with --faces index: which face, counted from the left from 0 (default 0)")
    g.add_argument("--reference", type=Path, metavar="IMAGE",
                   help="with --faces reference: swap faces of the person in IMAGE (default: the largest "
                        "face in the first target frame that has one)")
    g.add_argument("--similarity", type=float, metavar="X",
                   help="with --faces reference: maximum identity distance for a match, between 0 and 2 "
                        "(default: 0.42 for dlib, 0.6 for arcface)")
    return p


def _models_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("models")
    g.add_argument("--detector", choices=DETECTORS, default="mesh",
                   help="face detector: embedded MediaPipe mesh (default) or SCRFD det_10g")
    g.add_argument("--recognizer", choices=RECOGNIZERS, default="dlib",
                   help="with --faces reference: recognizer that matches the reference (default: "
                        "embedded dlib)")
    g.add_argument("--swapper", choices=SWAPPERS, default="mesh",
                   help="face swapper (default: mesh, the embedded classical swapper)")
    g.add_argument("--enhancer", choices=ENHANCERS, default="none", help="face enhancer (default: none)")
    g.add_argument("--enhancer-blend", type=float, default=0.8, metavar="F",
                   help="with --enhancer: share of the enhanced face kept, 0..1 (default 0.8)")
    g.add_argument("--enhancer-fidelity", type=float, default=0.5, metavar="F",
                   help="with --enhancer codeformer: 0 strongest restoration .. 1 closest to the input "
                        "(default 0.5)")
    g.add_argument("--mask", choices=("box", "mesh"), default="box",
                   help="paste-back mask of neural swappers (default: box, a feathered box)")
    g.add_argument("--pixel-boost", type=int, choices=PIXEL_BOOSTS, metavar="{256,512}",
                   help="neural swappers: run at this crop size by pixel-shuffled tiles (default: the "
                        "model's own size)")
    g.add_argument("--execution-provider", choices=PROVIDERS, default="cpu",
                   help="where neural models run (default: cpu); never silently replaced by another")
    g.add_argument("--execution-threads", type=int, metavar="N",
                   help="inference threads, 1 to 256 (default: the runtime's own choice)")
    g.add_argument("--torch-compile", action="store_true",
                   help="torch providers: compile the models (a minute or more of warm-up each; pays off "
                        "on long videos)")
    g.add_argument("--frame-workers", type=int, metavar="N",
                   help="threads that swap, enhance and watermark frames, 1 to 32 (default: half the "
                        "cores, 1 to 4)")
    g.add_argument("--frame-batch", type=int, metavar="N",
                   help="video frames per swap batch, 1 to 256 (default: 8 on torch providers, else 1)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="neural model arithmetic: auto (default: fp16 on torch-cuda, else the file's own), "
                        "fp32, fp16 or bf16 (torch providers), int8 (cpu: quantised once per model and "
                        "used only if its faces stay within 30 dB PSNR of fp32)")
    g.add_argument("--models-dir", type=Path, metavar="DIR",
                   help="model cache folder (default: $MASQUERADE_HOME/models or the per-user cache)")
    return p


def _output_parser() -> argparse.ArgumentParser:
    # The defaults are written out (media.options holds them; a test keeps the two equal): importing
    # the media package here would load PyAV and OpenCV for --help.
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument("--video-encoder", default="libx264", metavar="NAME",
                   help="libx264 (default), libx265, libvpx-vp9, libsvtav1 or a hardware encoder "
                        "that the local FFmpeg has")
    g.add_argument("--video-quality", type=int, metavar="0-51",
                   help="video quality, 0 best .. 51 worst, CRF-like (default: CRF 18 for "
                        "x264/x265, CRF 32 of 63 for VP9, the encoder's own default for others)")
    g.add_argument("--video-preset", metavar="NAME",
                   help="encoder speed preset, ultrafast .. veryslow or the encoder's own names "
                        "(default: veryfast for x264/x265, cpu-used 4 for VP9, the encoder's "
                        "own default for others)")
    g.add_argument("--trim-start", type=float, metavar="SECONDS",
                   help="start of the target video to keep (default: its start)")
    g.add_argument("--trim-end", type=float, metavar="SECONDS",
                   help="end of the target video to keep (default: its end)")
    g.add_argument("--skip-audio", action="store_true",
                   help="leave audio out of the output video (default: audio is copied untouched)")
    g.add_argument("--image-quality", type=int, default=95, metavar="1-100",
                   help="JPEG/WebP quality of image outputs (default 95; PNG is lossless)")
    return p


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


def _cluster_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("cluster (pip install 'masquerade[cluster]')")
    g.add_argument("--cluster", metavar="ray[:ADDRESS]",
                   help="run on a Ray cluster: ray starts or joins a local one, ray:auto joins a running "
                        "one, ray://HOST:PORT connects with Ray Client; videos are split at key frames "
                        "into segments done in parallel, with the same output (default: this machine)")
    g.add_argument("--cluster-workers", type=int, metavar="N",
                   help="workers (each loads the models once; default: as many as the cluster holds)")
    g.add_argument("--cluster-cpus", type=int, metavar="N",
                   help="CPUs each worker asks for (default 2; on torch-cuda each also takes a GPU)")
    g.add_argument("--segment-seconds", type=float, metavar="S",
                   help="shortest segment a video is split into, at the source's key frames (default 4)")
    g.add_argument("--cluster-store", type=Path, metavar="DIR",
                   help="where finished segments wait for their output, so a run started again redoes "
                        "only what is missing (default: cluster/ in masquerade's cache folder)")
    return p


CLUSTER_ONLY = ("cluster_workers", "cluster_cpus", "segment_seconds", "cluster_store")


def check_cluster_args(args: argparse.Namespace) -> None:
    """The cluster's options do nothing without ``--cluster``: say so instead of ignoring them."""
    given = [f"--{name.replace('_', '-')}" for name in CLUSTER_ONLY if getattr(args, name) is not None]
    if args.cluster is None and given:
        raise UsageError(f"{', '.join(given)} only apply with --cluster")


def build_parser() -> argparse.ArgumentParser:
    parser = StrictParser(
        prog="masquerade",
        description="Swap faces in images and videos. Every output is watermarked and labelled as "
                    "synthetic. Only swap a real person's face with that person's consent.",
    )
    parser.add_argument("--version", action="version", version=f"masquerade {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    swap = sub.add_parser(
        "swap", help="put the source face onto faces in a target image or video",
        description="Put the face of the source photo(s) onto faces of a target image or video. The output "
                    "is watermarked and carries a C2PA label; it is written under a temporary name and "
                    "renamed when complete.",
        parents=[_faces_parser(), _models_parser(), _output_parser(), limits_parser(), _cluster_parser()],
    )
    swap.add_argument("-s", "--source", nargs="+", type=Path, required=True, metavar="SOURCE",
                      help="photo(s) of the face to put in; with several, the best one is used")
    swap.add_argument("-t", "--target", type=Path, required=True, help="image or video to change")
    swap.add_argument("-o", "--output", type=Path, required=True, help="where to write the result")
    swap.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    swap.set_defaults(func=_run_swap)
    _register_optional(sub)
    return parser


def _run_swap(args: argparse.Namespace) -> int:
    from masquerade.cli.swap_cmd import run

    return run(args)


def _register_optional(sub: argparse._SubParsersAction) -> None:
    from masquerade.cli import bench_cmd, models_cmd, verify_cmd

    models_cmd.register(sub)
    verify_cmd.register(sub)
    bench_cmd.register(sub)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The one place where command-line arguments become options."""
    return RunConfig(
        detect=DetectOptions(detector=args.detector),
        select=SelectOptions(mode=args.faces, face_index=args.face_index, reference=args.reference,
                             similarity=args.similarity),
        swap=SwapOptions(swapper=args.swapper, mask=args.mask, pixel_boost=args.pixel_boost),
        enhance=EnhanceOptions(enhancer=args.enhancer, blend=args.enhancer_blend,
                               fidelity=args.enhancer_fidelity),
        encode=EncodeOptions(video_encoder=args.video_encoder, video_quality=args.video_quality,
                             video_preset=args.video_preset, trim_start=args.trim_start,
                             trim_end=args.trim_end, skip_audio=args.skip_audio,
                             image_quality=args.image_quality),
        runtime=RuntimeOptions(execution_provider=args.execution_provider,
                               execution_threads=args.execution_threads, models_dir=args.models_dir,
                               precision=args.precision, frame_batch=args.frame_batch,
                               torch_compile=args.torch_compile, frame_workers=args.frame_workers),
        recognizer=args.recognizer,
        limits=limits_from_args(args),
    )


def limits_from_args(args: argparse.Namespace) -> LimitOptions:
    return LimitOptions(max_image_megapixels=args.max_image_megapixels,
                        max_video_megapixels=args.max_video_megapixels)
