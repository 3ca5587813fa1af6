#!/usr/bin/env bash
# The GPU figures of issue 5 in as few device calls as possible (see benchmarks/device_wheels.py).
#
#   bash benchmarks/gpu_check.sh install    # one call per .whl/N folder, carrying it: installs into .site
#   bash benchmarks/gpu_check.sh run        # GPU tests, then the torch-cuda bench table into $OUT
#   bash benchmarks/gpu_check.sh compiled   # the same bench with torch.compile (minutes of warm-up)
#
# .site/ is git-ignored, so it stays on the warm machine between calls. Device calls:
#   carry [".whl/1"], command "bash benchmarks/gpu_check.sh install"   (then .whl/2, ...)
#   command "bash benchmarks/gpu_check.sh run", timeout_s 540
set -euo pipefail
mode=${1:-run}
if [ "$mode" = install ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site \
        .whl/*/*.whl
    exit 0
fi
export PYTHONPATH="$PWD/.site:$PWD/src" PYTHONUNBUFFERED=1 MASQUERADE_HOME=/tmp/masquerade-home
out=${OUT:-/tmp}
if [ "$mode" = compiled ]; then
    python3 -m masquerade bench --execution-provider torch-cuda --torch-compile --sizes 1080p --faces 1 \
        --seconds 6 --neural-frames 150 --no-int8 2>"$out/bench_compiled.err" | tee "$out/bench_compiled.txt"
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/backends 2>&1 | tee "$out/gpu_tests.log" | tail -3
# Swap model alone (fp16, batches up to 64) and the 1080p engine vs codec ceiling vs roop-style baseline.
python3 -m masquerade bench --execution-provider torch-cuda --sizes 1080p --faces 1 4 --seconds 6 \
    --neural-frames 150 --no-int8 2>"$out/bench_gpu.err" | tee "$out/bench_gpu.txt"
# The same with the GFPGAN-sized enhancer.
python3 -m masquerade bench --execution-provider torch-cuda --sizes 1080p --faces 1 --seconds 6 \
    --neural-frames 150 --no-int8 --no-models --enhancer 2>>"$out/bench_gpu.err" | tee "$out/bench_gpu_enhancer.txt"
