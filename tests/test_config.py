"""One validation of options (config.validate / config_problems): ranges, vocabulary and options that
do nothing for the run, each named by its command-line spelling; the API and the CLI refuse through it."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from masquerade.api import swap
from masquerade.cli.main import main
from masquerade.config import (
    DetectOptions,
    EncodeOptions,
    EnhanceOptions,
    LimitOptions,
    RunConfig,
    RuntimeOptions,
    SelectOptions,
    SwapOptions,
    TrackOptions,
    config_problems,
    validate,
)
from masquerade.errors import ProviderUnavailable, UsageError

NEURAL = RunConfig(swap=SwapOptions(swapper="inswapper_128"))


def _options(config: RunConfig, kind: str | None = None) -> list[str]:
    return [p.option for p in config_problems(config, kind)]  # type: ignore[arg-type]


@pytest.mark.parametrize("config", [
    RunConfig(),
    NEURAL,
    RunConfig(select=SelectOptions(mode="index", face_index=2)),
    RunConfig(select=SelectOptions(reference=Path("r.jpg"), similarity=0.3), recognizer="arcface"),
    replace(NEURAL, swap=SwapOptions(swapper="inswapper_128", pixel_boost=256, mask="mesh"),
            enhance=EnhanceOptions(enhancer="codeformer", blend=0.5, fidelity=0.9),
            runtime=RuntimeOptions(execution_provider="cuda", execution_threads=4, frame_batch=4)),
    replace(NEURAL, runtime=RuntimeOptions(execution_provider="torch-cpu", precision="bf16",
                                           torch_compile=True)),
    RunConfig(encode=EncodeOptions(video_encoder="libvpx-vp9", video_quality=30, video_preset="slow",
                                   trim_start=1.0, trim_end=2.5, skip_audio=True)),
    RunConfig(limits=LimitOptions(max_image_megapixels=200, max_video_megapixels=8.3)),
])
def test_valid_configurations_have_no_problems(config):
    assert config_problems(config, "video" if config.encode != EncodeOptions() else None) == []
    validate(config)


@pytest.mark.parametrize(("config", "option"), [
    # values out of range or unknown (NaN is never in range)
    (RunConfig(runtime=RuntimeOptions(execution_threads=0)), "--execution-threads"),
    (RunConfig(runtime=RuntimeOptions(execution_threads=-4)), "--execution-threads"),
    (RunConfig(runtime=RuntimeOptions(execution_threads=100_000)), "--execution-threads"),
    (RunConfig(runtime=RuntimeOptions(frame_workers=0)), "--frame-workers"),
    (RunConfig(runtime=RuntimeOptions(frame_batch=-1)), "--frame-batch"),
    (RunConfig(select=SelectOptions(face_index=-1, mode="index")), "--face-index"),
    (RunConfig(select=SelectOptions(similarity=5.0)), "--similarity"),
    (RunConfig(select=SelectOptions(similarity=0.0)), "--similarity"),
    (RunConfig(select=SelectOptions(similarity=-0.3)), "--similarity"),
    (RunConfig(select=SelectOptions(similarity=math.nan)), "--similarity"),
    (replace(NEURAL, enhance=EnhanceOptions(enhancer="gfpgan_1.4", blend=1.5)), "--enhancer-blend"),
    (replace(NEURAL, enhance=EnhanceOptions(enhancer="gfpgan_1.4", blend=-0.1)), "--enhancer-blend"),
    (replace(NEURAL, enhance=EnhanceOptions(enhancer="gfpgan_1.4", blend=math.nan)), "--enhancer-blend"),
    (replace(NEURAL, enhance=EnhanceOptions(enhancer="codeformer", fidelity=2.0)), "--enhancer-fidelity"),
    (RunConfig(encode=EncodeOptions(video_quality=60)), "--video-quality"),
    (RunConfig(encode=EncodeOptions(image_quality=0)), "--image-quality"),
    (RunConfig(encode=EncodeOptions(trim_start=-1.0)), "--trim-start"),
    (RunConfig(encode=EncodeOptions(trim_start=math.inf)), "--trim-start"),
    (RunConfig(encode=EncodeOptions(trim_start=3.0, trim_end=2.0)), "--trim-end"),
    (RunConfig(encode=EncodeOptions(video_preset="warp-speed")), "--video-preset"),
    (RunConfig(encode=EncodeOptions(video_encoder="libnothing")), "--video-encoder"),
    (RunConfig(swap=SwapOptions(swapper="nope")), "--swapper"),
    (RunConfig(runtime=RuntimeOptions(execution_provider="quantum")), "--execution-provider"),
    (RunConfig(limits=LimitOptions(max_image_megapixels=0)), "--max-image-megapixels"),
    (RunConfig(limits=LimitOptions(max_video_megapixels=-1)), "--max-video-megapixels"),
    (RunConfig(track=TrackOptions(max_missed=-1)), "track.max_missed"),
    (RunConfig(track=TrackOptions(scan_interval=-1)), "track.scan_interval"),
    (RunConfig(detect=DetectOptions(min_score=2.0)), "detect.min_score"),
    # options that do nothing for this run
    (RunConfig(swap=SwapOptions(pixel_boost=256)), "--pixel-boost"),
    (RunConfig(swap=SwapOptions(mask="mesh")), "--mask"),
    (RunConfig(swap=SwapOptions(swapper="hyperswap_1a_256", pixel_boost=256)), "--pixel-boost"),
    (RunConfig(enhance=EnhanceOptions(blend=0.5)), "--enhancer-blend"),
    (replace(NEURAL, enhance=EnhanceOptions(enhancer="gfpgan_1.4", fidelity=0.9)), "--enhancer-fidelity"),
    (RunConfig(select=SelectOptions(mode="all", similarity=0.3)), "--similarity"),
    (RunConfig(select=SelectOptions(mode="all", reference=Path("r.jpg"))), "--reference"),
    (RunConfig(select=SelectOptions(mode="one", face_index=1)), "--face-index"),
    (RunConfig(select=SelectOptions(mode="all"), recognizer="arcface"), "--recognizer"),
    (RunConfig(runtime=RuntimeOptions(precision="fp32")), "--precision"),
    (replace(NEURAL, runtime=RuntimeOptions(precision="fp16")), "--precision"),
])
def test_each_bad_option_is_named_by_its_flag(config, option):
    assert _options(config) == [option]
    with pytest.raises(UsageError, match=option):
        validate(config)


@pytest.mark.parametrize("provider", ["cuda", "tensorrt", "coreml", "directml", "rocm", "openvino",
                                      "torch-cuda", "torch-cpu"])
def test_a_provider_nothing_in_the_run_uses_is_an_error(provider):
    config = RunConfig(runtime=RuntimeOptions(execution_provider=provider))
    with pytest.raises(UsageError, match=f"--execution-provider {provider} has nothing to run"):
        validate(config)
    validate(replace(config, swap=SwapOptions(swapper="inswapper_128")))  # a neural model uses it


def test_options_of_the_other_kind_of_target_are_errors():
    video_only = RunConfig(encode=EncodeOptions(trim_start=1.0, video_quality=20, skip_audio=True))
    assert _options(video_only, "image") == ["--video-quality", "--trim-start", "--skip-audio"]
    assert _options(video_only, "video") == []
    assert _options(RunConfig(encode=EncodeOptions(image_quality=80)), "video") == ["--image-quality"]


def test_every_problem_is_reported_at_once():
    config = RunConfig(swap=SwapOptions(pixel_boost=512), runtime=RuntimeOptions(execution_threads=0),
                       enhance=EnhanceOptions(blend=3.0))
    with pytest.raises(UsageError) as error:
        validate(config)
    flags = ("--pixel-boost", "--execution-threads", "--enhancer-blend")
    assert all(flag in str(error.value) for flag in flags)
    assert "\n" not in str(error.value)


def test_the_file_api_refuses_bad_options_before_any_work(tmp_path, examples_dir, monkeypatch):
    import masquerade.api as api

    monkeypatch.setattr(api, "Pipeline", lambda *a, **k: pytest.fail("models were loaded"))
    config = RunConfig(runtime=RuntimeOptions(execution_threads=0))
    with pytest.raises(UsageError, match="--execution-threads"):
        swap([examples_dir / "obama.jpg"], examples_dir / "biden.jpg", tmp_path / "o.jpg", config)
    with pytest.raises(UsageError, match="--trim-start applies to video targets only"):
        swap([examples_dir / "obama.jpg"], examples_dir / "biden.jpg", tmp_path / "o.jpg",
             RunConfig(encode=EncodeOptions(trim_start=1.0)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["--execution-threads", "0"],
    ["--similarity", "nan"],
    ["--enhancer-blend", "1.5"],
    ["--pixel-boost", "256"],
    ["--execution-provider", "cuda"],
    ["--face-index", "-1", "--faces", "index"],
])
def test_cli_nonsense_numbers_are_one_line_usage_errors(argv, tmp_path, examples_dir, capsys):
    code = main(["swap", "-s", str(examples_dir / "obama.jpg"), "-t", str(examples_dir / "biden.jpg"),
                 "-o", str(tmp_path / "o.jpg"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("masquerade: error: --") and err.count("\n") == 1
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_provider_availability_is_checked_up_front(monkeypatch):
    from masquerade._stages.build import check_provider_installed

    with pytest.raises(ProviderUnavailable, match="'cuda' is not in the installed onnxruntime"):
        check_provider_installed("cuda")
    monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` fails
    for provider in ("torch-cpu", "torch-cuda"):
        with pytest.raises(ProviderUnavailable, match=f"'{provider}' needs PyTorch"):
            check_provider_installed(provider)
