import argparse
from pathlib import Path

import pytest

from masquerade.cli.parser import build_parser, config_from_args
from masquerade.config import EncodeOptions, LimitOptions, RunConfig, SelectOptions, SwapOptions


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_defaults_become_the_default_config():
    args = parse("swap", "-s", "a.jpg", "-t", "b.mp4", "-o", "c.mp4")
    assert config_from_args(args) == RunConfig()
    assert args.source == [Path("a.jpg")] and not args.quiet


def test_every_option_reaches_its_config_field():
    args = parse(
        "swap", "-s", "a.jpg", "b.jpg", "-t", "t.mp4", "-o", "o.mkv",
        "--faces", "index", "--face-index", "2", "--reference", "r.jpg", "--similarity", "0.4",
        "--swapper", "inswapper_128", "--mask", "mesh", "--pixel-boost", "256",
        "--enhancer", "gfpgan_1.4", "--enhancer-blend", "0.5", "--enhancer-fidelity", "0.7",
        "--detector", "scrfd",
        "--recognizer", "arcface", "--execution-provider", "cuda", "--execution-threads", "3",
        "--models-dir", "/m", "--precision", "int8", "--frame-batch", "4", "--torch-compile",
        "--frame-workers", "3",
        "--video-encoder", "libx265", "--video-quality", "20", "--video-preset", "slow",
        "--trim-start", "1.5", "--trim-end", "3", "--skip-audio", "--image-quality", "80", "--quiet",
    )
    config = config_from_args(args)
    assert config.select == SelectOptions(mode="index", face_index=2, reference=Path("r.jpg"), similarity=0.4)
    assert config.swap == SwapOptions(swapper="inswapper_128", mask="mesh", pixel_boost=256)
    assert config.encode == EncodeOptions(video_encoder="libx265", video_quality=20, video_preset="slow",
                                          trim_start=1.5, trim_end=3.0, skip_audio=True, image_quality=80)
    assert config.enhance.enhancer == "gfpgan_1.4" and config.enhance.blend == 0.5
    assert config.enhance.fidelity == 0.7
    assert config.detect.detector == "scrfd" and config.recognizer == "arcface"
    assert config.runtime.execution_provider == "cuda" and config.runtime.execution_threads == 3
    assert config.runtime.models_dir == Path("/m") and config.runtime.precision == "int8"
    assert config.runtime.frame_batch == 4 and config.runtime.torch_compile
    assert config.runtime.frame_workers == 3
    assert args.source == [Path("a.jpg"), Path("b.jpg")] and args.quiet


def test_people_options_reach_their_config_fields():
    args = parse("swap", "-t", "a.mp4", "-t", "dir", "-o", "out", "--map", "r.jpg=x.jpg+y.jpg",
                 "--map", "q.jpg=z.jpg", "--reference-frame", "12", "--face-index", "1")
    select = config_from_args(args).select
    assert [(m.reference, m.sources) for m in select.mapping] == [
        (Path("r.jpg"), (Path("x.jpg"), Path("y.jpg"))), (Path("q.jpg"), (Path("z.jpg"),))]
    assert select.reference_frame == 12 and select.face_index == 1
    assert args.target == [Path("a.mp4"), Path("dir")] and args.source is None
    enhance = config_from_args(parse("enhance", "-t", "a.jpg", "-o", "b.jpg", "--enhancer", "codeformer"))
    assert enhance.select.mode == "all" and enhance.enhance.enhancer == "codeformer"
    faces = config_from_args(parse("faces", "a.mp4", "--similarity", "0.3", "--trim-end", "4"))
    assert faces.select.similarity == 0.3 and faces.encode.trim_end == 4.0


def test_version_is_fast_and_printed(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--version")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("masquerade ")


@pytest.mark.parametrize("argv", [
    ["swap", "-s", "a.jpg", "-o", "c.jpg"],                      # no target
    ["enhance", "-t", "b.jpg", "-o", "c.jpg"],                   # no enhancer
    ["enhance", "-t", "b.jpg", "-o", "c.jpg", "--enhancer", "none"],
    ["faces"],                                                   # no target
    ["swap", "-s", "a.jpg", "-t", "b.jpg", "-o", "c.jpg", "--faces", "some"],
    ["swap", "-s", "a.jpg", "-t", "b.jpg", "-o", "c.jpg", "--pixel-boost", "300"],
    ["swap", "-s", "a.jpg", "-t", "b.jpg", "-o", "c.jpg", "--precision", "int4"],
])
def test_bad_arguments_exit_with_usage_error(argv):
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2


def _subparser(parser, *names):
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def test_swap_help_shows_every_default(capsys):
    from masquerade.media.options import X264_DEFAULT_CRF, X264_DEFAULT_PRESET

    swap = _subparser(build_parser(), "swap")
    for action in swap._actions:
        if action.help is argparse.SUPPRESS or action.required or isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            continue  # off unless given
        assert "default" in action.help, f"{flag} does not say its default"
        if action.default is not None:
            shown = f"{action.default:g}" if isinstance(action.default, float) else str(action.default)
            assert shown in action.help, f"{flag}: default {shown} not in its help"
    with pytest.raises(SystemExit):
        parse("swap", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert f"CRF {X264_DEFAULT_CRF}" in text and X264_DEFAULT_PRESET in text


def test_every_command_and_argument_has_help():
    parser = build_parser()
    for path in (("swap",), ("verify",), ("bench",), ("models",), ("models", "list"), ("models", "download"),
                 ("models", "import"), ("models", "verify")):
        sub = _subparser(parser, *path)
        assert sub.description, f"{' '.join(path)} has no description"
        for action in sub._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{' '.join(path)} {action.dest} has no help"


@pytest.mark.parametrize(("argv", "usage"), [
    (["swap", "-s", "a.jpg", "-t", "b.jpg", "-o", "c.jpg", "--bogus"], "usage: masquerade swap"),
    (["models", "download", "x", "--bogus"], "usage: masquerade models download"),
    (["verify", "x.jpg", "--bogus"], "usage: masquerade verify"),
])
def test_an_unknown_option_prints_its_commands_usage(argv, usage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(usage)
    assert "unrecognized arguments: --bogus" in err


def test_limits_reach_the_config():
    args = parse("swap", "-s", "a.jpg", "-t", "b.mp4", "-o", "c.mp4", "--max-image-megapixels", "120",
                 "--max-video-megapixels", "8.3")
    assert config_from_args(args).limits == LimitOptions(max_image_megapixels=120, max_video_megapixels=8.3)


def test_writing_an_image_as_a_video_says_an_image(tmp_path, examples_dir):
    from masquerade.api import check_request
    from masquerade.errors import UsageError

    with pytest.raises(UsageError, match=r"cannot write an image as \.mp4"):
        check_request([examples_dir / "obama.jpg"], examples_dir / "biden.jpg", tmp_path / "o.mp4")
