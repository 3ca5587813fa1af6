"""inswapper on this CPU, and what paste-back costs when the model changes nothing.

1. ``paste``: an identity stand-in swapper (returns its input) on a real photo with a ~200 px face,
   pasted back (a) the way InsightFace's ``INSwapper.get(paste_back=True)`` does it (re-implemented
   here from its description: bilinear warps of the crop and of a white square to the full frame,
   threshold > 20, erode by a tenth of the mask size, Gaussian blur by a twentieth, float blend
   truncated to uint8), with its error split into resampling, mask and truncation; (b) by masquerade
   (ROI, Lanczos, box mask, rounding), without and with pixel boost; (c) at the crop's native scale.
2. ``speed``: an architecture-faithful random-weight inswapper (138 M parameters) through ONNX
   Runtime on the CPU: ms per face for the bare graph and for the whole swap (crop, infer, paste),
   and with pixel boost 256 (4 tiles).

    .venv/bin/python benchmarks/bench_inswapper_standin.py [--only paste|speed] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "stages"))

from neural_support import KPS, face, native_scale_image, session  # noqa: E402

from masquerade._stages.paste import box_mask, frame_mask, paste_back  # noqa: E402
from masquerade._stages.recognize_arcface import ArcFaceRecognizer  # noqa: E402
from masquerade._stages.swap_neural import NeuralSwapper  # noqa: E402
from masquerade.config import SwapOptions  # noqa: E402
from masquerade.geometry.align import affine_scale, crop_affine, invert  # noqa: E402
from masquerade.models.manifest import ARCFACE_128, get_spec  # noqa: E402
from masquerade.models.runtime import new_session  # noqa: E402
from masquerade.models.standins import arcface, swapper  # noqa: E402


def insightface_paste(frame: np.ndarray, kps: np.ndarray, truncate: bool = True):
    """InsightFace-style crop + identity model + paste-back. Returns the result and its float mask."""
    m = crop_affine(kps, ARCFACE_128, 128)
    crop = cv2.warpAffine(frame, m, (128, 128), borderValue=0.0)  # bilinear, black border
    h, w = frame.shape[:2]
    im = invert(m)
    fake = cv2.warpAffine(crop, im, (w, h), borderValue=0.0)
    white = cv2.warpAffine(np.full((128, 128), 255, np.float32), im, (w, h), borderValue=0.0)
    white[white > 20] = 255
    ys, xs = np.nonzero(white == 255)
    size = int(np.sqrt((ys.max() - ys.min()) * (xs.max() - xs.min())))
    k = max(size // 10, 10)
    mask = cv2.erode(white, np.ones((k, k), np.uint8), iterations=1)
    k = max(size // 20, 5)
    mask = cv2.GaussianBlur(mask, (2 * k + 1, 2 * k + 1), 0) / 255.0
    merged = mask[..., None] * fake + (1 - mask[..., None]) * frame.astype(np.float32)
    out = merged.astype(np.uint8) if truncate else np.clip(np.rint(merged), 0, 255).astype(np.uint8)
    return out, mask, fake


def figures(frame: np.ndarray, out: np.ndarray, region: np.ndarray) -> str:
    diff = np.abs(out.astype(np.int16) - frame).max(axis=2)
    changed = diff > 0
    outside = diff[~region].max() if (~region).any() else 0
    return (
        f"region {int(region.sum()):>7} px | changed {int(changed.sum()):>7} px | max {int(diff.max()):>3} | "
        f"mean in region {diff[region].mean():5.2f} | max outside region {int(outside)}"
    )


def _region(mask: np.ndarray, affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    (x1, y1, x2, y2), roi = frame_mask(mask, affine, shape)
    region = np.zeros(shape[:2], bool)
    region[y1:y2, x1:x2] = roi > 0
    return region


def paste_section(box_width: int) -> None:
    obama = cv2.imread(str(ROOT / "examples" / "obama.jpg"))
    f = box_width / 241  # obama.jpg's face box is 241 px wide
    frame = cv2.resize(obama, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    kps = np.asarray(KPS["obama"]) * f
    m = crop_affine(kps, ARCFACE_128, 128)
    print(
        f"\n== identity model, face box ~{box_width} px, 128 crop covers {128 / affine_scale(m):.0f} px "
        f"(frame {frame.shape[1]}x{frame.shape[0]}) =="
    )
    out, mask, _ = insightface_paste(frame, kps)
    region = mask > 0
    print("InsightFace as shipped               ", figures(frame, out, region))
    rounded, _, _ = insightface_paste(frame, kps, truncate=False)
    print("  its warps+mask, rounded, not trunc.", figures(frame, rounded, region))
    same = (mask[..., None] * frame + (1 - mask[..., None]) * frame.astype(np.float32)).astype(np.uint8)
    print("  no resampling error, its mask+trunc", figures(frame, same, region))
    crop = cv2.warpAffine(frame, m, (128, 128))
    ours_mask = paste_back(frame, crop, box_mask(128), m, interpolation=cv2.INTER_LINEAR)
    print(
        "  its bilinear warps, our mask+round ",
        figures(frame, ours_mask, _region(box_mask(128), m, frame.shape)),
    )
    with tempfile.TemporaryDirectory() as tmp:
        rec = ArcFaceRecognizer(session(Path(tmp), "arc", arcface()), get_spec("w600k_r50"))
        target = face("obama", f)
        for model, boosts in (("inswapper_128", (None, 256, 512)), ("hyperswap_1a_256", (None, 512))):
            spec = get_spec(model)
            graph = swapper(spec.size_px, "identity", hyperswap=model.startswith("hyper"))
            sess = session(Path(tmp), model, graph)
            for boost in boosts:
                sw = NeuralSwapper(sess, spec, SwapOptions(pixel_boost=boost), rec)
                res = sw.swap(frame, target, sw.prepare([(frame, target)]))
                _, aff = sw.crops(frame, [target])
                reg = _region(sw.mask(target, aff[0]), aff[0], frame.shape)
                print(f"masquerade {model:<16} boost {boost!s:>4}", figures(frame, res, reg))


def native_section() -> None:
    obama = cv2.imread(str(ROOT / "examples" / "obama.jpg"))
    print("\n== identity model, face at the crop's native scale (1 crop px per frame px) ==")
    with tempfile.TemporaryDirectory() as tmp:
        rec = ArcFaceRecognizer(session(Path(tmp), "arc", arcface()), get_spec("w600k_r50"))
        for model in ("inswapper_128", "hyperswap_1a_256"):
            spec = get_spec(model)
            graph = swapper(spec.size_px, "identity", hyperswap=model.startswith("hyper"))
            sw = NeuralSwapper(session(Path(tmp), model, graph), spec, SwapOptions(), rec)
            img, native = native_scale_image(obama, "obama", model)
            res = sw.swap(img, native, sw.prepare([(img, native)]))
            _, aff = sw.crops(img, [native])
            print(
                f"masquerade {model:<16}           ",
                figures(img, res, _region(sw.mask(native, aff[0]), aff[0], img.shape)),
            )
            out, mask, _ = (
                insightface_paste(img, native.kps5) if model == "inswapper_128" else (None, None, None)
            )
            if out is not None:
                print("InsightFace as shipped               ", figures(img, out, mask > 0))


def speed_section(runs: int, threads: int | None) -> None:
    from masquerade.models.standins_arch import inswapper_arch

    started = time.perf_counter()
    model, stats = inswapper_arch()
    print(
        f"\n== architecture-faithful inswapper stand-in: {stats.parameters / 1e6:.2f} M parameters, "
        f"{stats.macs / 1e9:.1f} GMAC per face (built in {time.perf_counter() - started:.0f} s) =="
    )
    obama = cv2.imread(str(ROOT / "examples" / "obama.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inswapper_arch.onnx"
        path.write_bytes(model.SerializeToString())
        del model
        sess = new_session(path, "cpu", threads)
        rec = ArcFaceRecognizer(session(Path(tmp), "arc", arcface()), get_spec("w600k_r50"))
        target = face("obama")
        feeds = {
            "target": np.random.default_rng(0).random((1, 3, 128, 128), np.float32),
            "source": np.random.default_rng(1).random((1, 512), np.float32),
        }
        sess.run(None, feeds)  # warm-up
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - t)
        print(
            f"bare graph (session.run)         : median {1000 * np.median(times):7.0f} ms/face "
            f"(min {1000 * min(times):.0f}, {runs} runs, threads={threads or 'default'})"
        )
        for boost in (None, 256):
            sw = NeuralSwapper(sess, get_spec("inswapper_128"), SwapOptions(pixel_boost=boost), rec)
            src = sw.prepare([(obama, target)])
            times = []
            for _ in range(runs if boost is None else 1):
                t = time.perf_counter()
                sw.swap(obama, target, src)
                times.append(time.perf_counter() - t)
            print(
                f"NeuralSwapper.swap boost {boost!s:>4}     : median {1000 * np.median(times):7.0f} ms/face"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("paste", "speed"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.only in (None, "paste"):
        for width in (120, 200):
            paste_section(width)
        native_section()
    if args.only in (None, "speed"):
        speed_section(args.runs, args.threads)


if __name__ == "__main__":
    main()
