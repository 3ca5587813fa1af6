import importlib.util

import av
import pytest

from masquerade.media import VideoReader


@pytest.fixture(scope="module")
def maker(examples_dir):
    spec = importlib.util.spec_from_file_location("make_sample_clip", examples_dir / "make_sample_clip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_clip_has_the_asked_shape_and_audio(maker, tmp_path):
    path = maker.make_benchmark_clip(tmp_path / "bench.mp4", seconds=1.2, size=(320, 180), fps=25)
    with VideoReader(path) as reader:
        info = reader.info
        assert (info.width, info.height, info.fps, info.codec) == (320, 180, 25, "h264")
        assert info.has_audio and info.audio_codec == "aac"
        assert sum(1 for _ in reader.frames()) == 30
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(1.2, abs=0.05)


def test_committed_sample_matches_its_description(examples_dir):
    path = examples_dir / "sample.mp4"
    assert path.stat().st_size < 2_000_000
    with VideoReader(path) as reader:
        info = reader.info
        assert (info.width, info.height, info.fps, info.frame_count) == (960, 540, 25, 150)
        assert info.duration == pytest.approx(6.0) and info.audio_codec == "aac"
