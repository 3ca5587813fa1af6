"""Fetch the wheels the GPU machine lacks and pack them into folders that each fit one device call.

    python benchmarks/device_wheels.py          # writes .whl/1, .whl/2, ... (git-ignored)

The lent GPU machine (Python 3.12, PyTorch, onnxruntime, numpy, onnx preinstalled, no internet)
lacks PyAV, OpenCV, LiteRT, NudeNet, c2pa and a few small packages; a device call carries at most
64 MiB with the repository, so the wheels travel in several calls (``benchmarks/gpu_check.sh``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ("av", "opencv-python-headless", "pillow", "ai-edge-litert", "nudenet", "c2pa-python",
          "cryptography", "cffi", "PyWavelets", "tqdm", "dlib-bin", "pytest", "pluggy", "iniconfig")
"""What the GPU machine lacks for the bench and tests/backends (face_recognition_models, 100 MB, is
only needed by the dlib recognizer, which neither uses)."""
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
LIMIT_BYTES = 58 * 2**20
"""Per folder: 64 MiB per call, less the repository (~5.5 MB). The OpenCV wheel alone is 58.4 MiB,
so it travels by itself, just under the limit with the repository."""


def main() -> None:
    out = ROOT / ".whl"
    shutil.rmtree(out, ignore_errors=True)
    download = out / "all"
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(download),
                    *WHEELS], check=True)
    folders: list[tuple[int, Path]] = []
    for wheel in sorted(download.glob("*.whl"), key=lambda p: -p.stat().st_size):
        size = wheel.stat().st_size
        index = next((i for i, (used, _) in enumerate(folders) if used + size <= LIMIT_BYTES), None)
        if index is None:
            folders.append((0, out / str(len(folders) + 1)))
            index = len(folders) - 1
            folders[index][1].mkdir(parents=True)
        used, folder = folders[index]
        shutil.move(str(wheel), folder / wheel.name)
        folders[index] = (used + size, folder)
    download.rmdir()
    for used, folder in folders:
        names = ", ".join(p.name for p in folder.iterdir())
        print(f"{folder.relative_to(ROOT)}: {used / 2**20:.1f} MiB: {names}")


if __name__ == "__main__":
    main()
