"""``masquerade bench``: measure codec ceiling, sequential baseline and engine on this machine; one table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from masquerade.config import MAX_EXECUTION_THREADS
from masquerade.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="measure speed and memory on this machine (codec ceiling, baseline, engine)",
        description="Runs every row in a fresh process on synthetic clips made from a real photo and "
                    "prints one table. Neural rows use the real models when they are in the cache, "
                    "else architecture-faithful random-weight stand-ins (same cost, meaningless output).",
    )
    p.add_argument("--seconds", type=float, default=4.0, help="length of the embedded-path clips (default 4)")
    p.add_argument("--sizes", nargs="+", default=["720p", "1080p"], metavar="SIZE",
                   help="frame sizes: 720p, 1080p, 360p or WxH (default: 720p 1080p)")
    p.add_argument("--faces", nargs="+", type=int, choices=(1, 4), default=[1, 4],
                   help="faces per frame (default: 1 4)")
    p.add_argument("--no-neural", action="store_true", help="skip the neural-path and model rows")
    p.add_argument("--neural-frames", type=int, default=4, metavar="N",
                   help="frames per neural row (default 4: stand-ins take seconds per face on a CPU)")
    p.add_argument("--enhancer", action="store_true", help="add a GFPGAN-sized enhancer to the neural rows")
    p.add_argument("--no-int8", action="store_true",
                   help="skip the int8 rows (the first run quantises the swapper: a minute or more)")
    p.add_argument("--no-models", action="store_true", help="skip the model-alone and paste-back rows")
    p.add_argument("--memory-check", action="store_true",
                   help="also compare the engine's peak RSS on 10 s and 60 s 720p clips")
    p.add_argument("--execution-threads", type=int, metavar="N", help="ONNX Runtime intra-op threads")
    p.add_argument("--execution-provider", choices=("cpu", "torch-cuda", "torch-cpu"), default="cpu",
                   help="where the neural rows' models run (default: cpu, ONNX Runtime)")
    p.add_argument("--torch-compile", action="store_true", help="torch providers: torch.compile the models")
    p.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="PyTorch providers: model arithmetic (default auto: fp16 on torch-cuda)")
    p.add_argument("--photo", type=Path, help="photo to film (default: the bundled public-domain photo)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="use this ONNX file for a registry model (det_10g, w600k_r50, inswapper_128, "
                        "gfpgan_1.4) instead of the cache or a stand-in; repeatable")
    p.set_defaults(func=run)


def _model_files(values: list[str]) -> tuple[tuple[str, Path], ...]:
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--model takes NAME=PATH, got {value!r}")
        pairs.append((name, Path(path)))
    return tuple(pairs)


def run(args: argparse.Namespace) -> int:
    from masquerade.bench import BenchOptions, format_table, run_bench

    if not args.seconds > 0 or args.neural_frames < 1:  # "not >": NaN is not positive either
        raise UsageError("--seconds must be positive and --neural-frames at least 1")
    threads = args.execution_threads
    if threads is not None and not 1 <= threads <= MAX_EXECUTION_THREADS:
        raise UsageError(f"--execution-threads must be between 1 and {MAX_EXECUTION_THREADS}, got {threads}")
    if (args.precision != "auto" or args.torch_compile) and args.execution_provider == "cpu":
        raise UsageError("--precision and --torch-compile apply to the torch providers here "
                         "(int8 rows run on the cpu anyway)")
    if args.execution_provider != "cpu":  # fail before minutes of building stand-ins, not after
        from masquerade._backends.torch_session import check_device
        from masquerade._stages.build import torch_dtype

        device = "cuda" if args.execution_provider == "torch-cuda" else "cpu"
        check_device(device, torch_dtype(args.precision, args.execution_provider))
    options = BenchOptions(
        seconds=args.seconds, sizes=tuple(args.sizes), faces=tuple(dict.fromkeys(args.faces)),
        neural=not args.no_neural, neural_frames=args.neural_frames, enhancer=args.enhancer,
        int8=not args.no_int8, memory_check=args.memory_check, models=not args.no_models,
        threads=args.execution_threads, provider=args.execution_provider, precision=args.precision,
        torch_compile=args.torch_compile,
        photo=args.photo, model_files=_model_files(args.model),
    )
    report = run_bench(options, progress=lambda line: print(f"bench: {line}", file=sys.stderr, flush=True))
    print(format_table(report))
    return 0
