import itertools
from fractions import Fraction

import av
import numpy as np
import pytest
from clips import marker_frame, packets, video_timing

from masquerade.config import EncodeOptions
from masquerade.errors import MediaError, OutputError, UsageError
from masquerade.media.probe import probe_kind
from masquerade.media.reader import VideoReader
from masquerade.media.writer import VideoWriter


def transcode(src, dst, options=None, process=None, **trim):
    options = options or EncodeOptions()
    with VideoReader(src, **trim) as reader, VideoWriter(dst, reader, options) as writer:
        for frame in reader.frames():
            if process is not None:
                process(frame)
            writer.write(frame)
    return reader


def test_round_trip_keeps_frames_timing_and_audio_bytes(clip, tmp_path):
    out = tmp_path / "out.mp4"
    reader = transcode(clip, out)
    assert reader.info.frame_count == 25 and reader.info.fps == 25 and reader.info.has_audio
    assert (reader.info.width, reader.info.height) == (160, 120)
    pts_in, tb_in, end_in = video_timing(clip)
    pts_out, tb_out, end_out = video_timing(out)
    assert len(pts_out) == 25 and pts_out == pts_in and tb_out == tb_in and end_out == end_in
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height, video.average_rate) == (160, 120, 25)
        assert video.frames == 25 and float(video.duration * video.time_base) == pytest.approx(1.0)
    audio_in, audio_out = packets(clip, "audio"), packets(out, "audio")
    assert len(audio_in) > 40 and audio_out == audio_in  # remuxed untouched: same bytes, same pts
    assert list(tmp_path.iterdir()) == [clip, out] or sorted(tmp_path.iterdir()) == sorted([clip, out])


def test_output_is_interleaved(clip, tmp_path):
    out = tmp_path / "out.mkv"
    transcode(clip, out)
    with av.open(str(out)) as container:
        kinds = [p.stream.type for p in container.demux() if p.dts is not None]
    first_video_half = kinds[: len(kinds) // 2]
    assert "audio" in first_video_half and "video" in kinds[len(kinds) // 2 :]


def test_pixels_survive_the_round_trip(clip, tmp_path):
    out = tmp_path / "out.mp4"
    transcode(clip, out)
    with VideoReader(out) as reader:
        for frame in reader.frames():
            expected = marker_frame(frame.index, 160, 120)
            assert np.abs(frame.image.astype(int) - expected).mean() < 3


def test_processed_pixels_reach_the_output(clip, tmp_path):
    out = tmp_path / "out.mp4"

    def paint(frame):
        frame.image[60:, :80] = (255, 0, 0)

    transcode(clip, out, process=paint)
    with VideoReader(out) as reader:
        image = next(reader.frames()).image
    assert np.abs(image[70:110, 10:70].astype(int) - (255, 0, 0)).max() < 12


def test_variable_frame_rate_keeps_timestamps(clip_factory, tmp_path):
    src = clip_factory(vfr=True, audio=False, frames=20)
    out = tmp_path / "out.mp4"
    transcode(src, out)
    pts_in, tb_in, end_in = video_timing(src)
    pts_out, tb_out, end_out = video_timing(out)
    gaps = {b - a for a, b in itertools.pairwise(pts_in)}
    assert len(gaps) > 1  # the input really is VFR
    assert [p * tb_out for p in pts_out] == [p * tb_in for p in pts_in]
    assert end_out * tb_out == end_in * tb_in


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_rotation_is_applied_for_the_pipeline_and_kept_in_the_output(clip_factory, tmp_path, rotation):
    src = clip_factory(rotation=rotation, audio=False, frames=5)
    out = tmp_path / "out.mp4"
    seen = []
    reader = transcode(src, out, process=lambda f: seen.append(f.image.copy()))
    upright = np.rot90(marker_frame(0, 160, 120), k=rotation // 90)  # display = stored turned CCW
    assert reader.info.rotation == rotation % 360 and seen[0].shape == upright.shape
    assert (reader.info.width, reader.info.height) == upright.shape[1::-1]
    assert np.abs(seen[0].astype(int) - upright).mean() < 3
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (160, 120)  # stored as the input stored it
        frame = next(container.decode(stream))
        assert frame.rotation % 360 == rotation % 360
        assert np.abs(frame.to_ndarray(format="bgr24").astype(int) - marker_frame(0, 160, 120)).mean() < 3


def test_trim_start_and_end(clip, tmp_path):
    out = tmp_path / "out.mp4"
    reader = transcode(clip, out, trim_start=0.2, trim_end=0.6)
    assert reader.info.frame_count == 10
    pts_out, tb, _ = video_timing(out)
    assert len(pts_out) == 10 and pts_out[0] == 0 and pts_out[-1] * tb == Fraction(9, 25)
    with VideoReader(out) as trimmed:  # the first kept frame is input frame 5
        first = next(trimmed.frames()).image
    assert np.abs(first.astype(int) - marker_frame(5, 160, 120)).mean() < 3
    audio_in, audio_out = packets(clip, "audio"), packets(out, "audio")
    payloads_in = [p[2] for p in audio_in]
    start = payloads_in.index(audio_out[0][2])
    assert [p[2] for p in audio_out] == payloads_in[start : start + len(audio_out)]
    assert 0 <= audio_out[0][0] < 1024 and 0.38 < len(audio_out) * 1024 / 48000 < 0.42


def test_trim_past_the_end(clip):
    with pytest.raises(UsageError, match="past the end"):
        VideoReader(clip, trim_start=5.0)
    with pytest.raises(UsageError, match="after trim start"):
        VideoReader(clip, trim_start=0.5, trim_end=0.5)


def test_skip_audio(clip, tmp_path):
    out = tmp_path / "out.mp4"
    transcode(clip, out, EncodeOptions(skip_audio=True))
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video"]


def test_ctrl_c_leaves_no_output(clip, tmp_path):
    out = tmp_path / "out.mp4"
    with (
        pytest.raises(KeyboardInterrupt),
        VideoReader(clip) as reader,
        VideoWriter(out, reader, EncodeOptions()) as writer,
    ):
        for frame in reader.frames():
            writer.write(frame)
            if frame.index == 12:
                raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == [clip.name]


def test_existing_output_survives_a_failed_run(clip, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    with (
        pytest.raises(RuntimeError),
        VideoReader(clip) as reader,
        VideoWriter(out, reader, EncodeOptions()) as writer,
    ):
        writer.write(next(reader.frames()))
        raise RuntimeError("stage failed")
    assert out.read_bytes() == b"previous result"
    assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize(
    ("name", "options", "error", "match"),
    [
        ("out.png", EncodeOptions(), UsageError, r"\.png"),
        ("missing/out.mp4", EncodeOptions(), OutputError, "does not exist"),
        ("out.webm", EncodeOptions(), UsageError, "libx264"),
        ("out.webm", EncodeOptions(video_encoder="libvpx-vp9"), UsageError, "aac audio"),
        ("out.mp4", EncodeOptions(video_encoder="mpeg4"), UsageError, "unsupported video encoder"),
        ("out.mp4", EncodeOptions(video_quality=70), UsageError, "between 0"),
    ],
)
def test_bad_outputs_fail_before_any_work(clip, tmp_path, name, options, error, match):
    with VideoReader(clip) as reader, pytest.raises(error, match=match):
        VideoWriter(tmp_path / name, reader, options)
    assert sorted(p.name for p in tmp_path.iterdir()) == [clip.name]


def test_output_equal_to_input(clip):
    with VideoReader(clip) as reader, pytest.raises(UsageError, match="is the input"):
        VideoWriter(clip, reader, EncodeOptions())


def test_vp9_webm_without_audio(clip, tmp_path):
    out = tmp_path / "out.webm"
    transcode(clip, out, EncodeOptions(video_encoder="libvpx-vp9", video_preset="ultrafast", skip_audio=True))
    pts_in, tb_in, _ = video_timing(clip)
    pts_out, tb_out, _ = video_timing(out)
    assert [p * tb_out for p in pts_out] == [p * tb_in for p in pts_in]


def test_kind_is_decided_by_content(clip, tmp_path, examples_dir):
    disguised = tmp_path / "clip.jpg"
    disguised.write_bytes(clip.read_bytes())
    photo = tmp_path / "photo.mp4"
    photo.write_bytes((examples_dir / "obama.jpg").read_bytes())
    assert probe_kind(disguised) == "video" and probe_kind(photo) == "image"


def test_bad_video_inputs(clip, tmp_path, clip_factory):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # moov is at the end: lost
    for path, match in [
        (tmp_path / "absent.mp4", "no such file"),
        (empty, "empty"),
        (text, "not a readable video"),
        (cut, "not a readable video"),
        (tmp_path, "not a file"),
    ]:
        with pytest.raises(MediaError, match=match):
            VideoReader(path)
        with pytest.raises(MediaError):
            probe_kind(path)


def test_truncated_faststart_video(clip_factory, tmp_path):
    src = clip_factory(options={"movflags": "+faststart"}, frames=50)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    with pytest.raises(MediaError, match="truncated"):
        VideoReader(cut)


def test_truncated_mkv_is_noticed_at_the_end(clip_factory, tmp_path):
    src = clip_factory("in.mkv", frames=50, audio=False)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    out = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match="truncated"):
        transcode(cut, out)
    assert not out.exists() and len(list(tmp_path.iterdir())) == 2


def test_audio_only_file_is_not_a_video(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(MediaError, match="no video stream"):
        probe_kind(path)


def test_streaming_memory_does_not_grow_with_length(clip_factory, tmp_path):
    import tracemalloc  # numpy reports its buffers to tracemalloc

    peaks = []
    for frames in (20, 100):
        src = clip_factory(f"in{frames}.mp4", frames=frames, size=(320, 240))
        tracemalloc.start()
        transcode(src, tmp_path / f"out{frames}.mp4")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    frame_bytes = 320 * 240 * 3
    assert peaks[1] < peaks[0] + 2 * frame_bytes and peaks[1] < 12 * frame_bytes


def test_subtitles_are_copied_where_the_container_allows(tmp_path):
    src = tmp_path / "subs.mkv"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        video.codec_context.time_base = Fraction(1, 25)
        subtitles = out.add_mux_stream("subrip")
        subtitles.time_base = Fraction(1, 1000)
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(marker_frame(i, 64, 64), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(video.encode(frame))
            if i % 10 == 0:
                line = av.Packet(f"line {i}".encode())
                line.stream, line.time_base = subtitles, Fraction(1, 1000)
                line.pts = line.dts = i * 40
                line.duration = 300
                out.mux(line)
        out.mux(video.encode())
    expected = packets(src, "subtitle")
    assert [p[2] for p in expected] == [b"line 0", b"line 10", b"line 20"]
    for name, kept in (("out.mkv", True), ("out.mp4", False)):
        with VideoReader(src) as reader, VideoWriter(tmp_path / name, reader, EncodeOptions()) as writer:
            for frame in reader.frames():
                writer.write(frame)
        assert packets(tmp_path / name, "subtitle") == (expected if kept else [])
        assert writer.skipped_streams == ([] if kept else ["subtitle:srt"])


def test_output_folder_that_is_a_file(clip, tmp_path):
    with VideoReader(clip) as reader, pytest.raises(OutputError, match="not a folder"):
        VideoWriter(clip / "out.mp4", reader, EncodeOptions())


@pytest.mark.parametrize(
    ("rotation", "hflip", "vflip"),
    [(0, False, True), (0, True, False), (90, False, True), (90, True, False), (270, True, True)],
)
def test_mirrored_display_matrices(tmp_path, rotation, hflip, vflip):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    stored = marker_frame(0, 48, 32)
    with av.open(str(src), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 48, 32, "yuv444p"
        video.codec_context.time_base = Fraction(1, 25)
        video.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
        frame = av.VideoFrame.from_ndarray(stored, format="bgr24")
        frame.pts, frame.time_base = 0, Fraction(1, 25)
        container.mux(video.encode(frame))
        container.mux(video.encode())
    # PyAV's documented meaning: turn counter-clockwise, then mirror.
    upright = np.rot90(stored, k=rotation // 90)
    upright = upright[:, ::-1] if hflip else upright
    upright = upright[::-1] if vflip else upright
    seen = []
    reader = transcode(src, out, process=lambda f: seen.append(f.image.copy()))
    assert seen[0].shape == upright.shape and np.abs(seen[0].astype(int) - upright).mean() < 3
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert bytes(frame.side_data["DISPLAYMATRIX"]) == reader.display_matrix
        assert np.abs(frame.to_ndarray(format="bgr24").astype(int) - stored).mean() < 3


def _mkv_with_timestamps(path, stamps):
    """An MKV whose video packets carry ``stamps`` (ms) as given: repeated or backward ones included."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"bf": "0", "g": "4"})
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        packets_out = []
        for i in range(len(stamps)):
            frame = av.VideoFrame.from_ndarray(marker_frame(i, 160, 120), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            packets_out += stream.encode(frame)
        packets_out += stream.encode()
        for packet, stamp in zip(packets_out, stamps, strict=True):
            packet.pts = round(stamp / 1000 / packet.time_base)
            packet.dts = None  # Matroska stores presentation times only; the muxer checks dts order
            out.mux(packet)
    return path


@pytest.mark.parametrize(("stamps", "retimed"), [
    ([0, 40, 80, 120, 120, 200, 240, 280], 1),             # two frames share a timestamp
    ([0, 40, 80, 120, 120, 120, 200, 240], 2),             # three do
])
def test_repeated_or_backward_timestamps_are_moved_not_a_crash(tmp_path, stamps, retimed):
    src = _mkv_with_timestamps(tmp_path / "in.mkv", stamps)
    reader = transcode(src, tmp_path / "out.mkv")
    assert reader.retimed_frames == retimed
    pts, _, _ = video_timing(tmp_path / "out.mkv")
    assert len(pts) == len(stamps) and all(b > a for a, b in itertools.pairwise(pts))


def test_a_clock_that_starts_again_continues_after_the_last_frame(clip):
    """Joined recordings: the second part's clock restarts at 0; it is shifted to follow the first."""
    with VideoReader(clip) as reader:
        step = round(1 / (reader.info.fps * reader.time_base))  # one frame in the stream's clock
        decoded = [reader._first, *itertools.islice(reader._decoded, 7)]
        for frame, pts in zip(decoded, [0, 1, 2, 3, 0, 1, 2, 3], strict=True):
            frame.pts = pts * step
        reader._first, reader._decoded = decoded[0], iter(decoded[1:])
        assert [ctx.pts for ctx in reader.frames()] == [i * step for i in range(8)]
        assert reader.retimed_frames == 1


def test_a_repeated_timestamp_through_the_cli_is_a_warning(tmp_path, examples_dir, capsys):
    from masquerade.cli.main import main

    src = _mkv_with_timestamps(tmp_path / "in.mkv", [0, 40, 80, 80, 160, 200])
    assert main(["swap", "-q", "-s", str(examples_dir / "astronaut.png"), "-t", str(src),
                 "-o", str(tmp_path / "out.mkv")]) == 0
    assert "1 frame(s) of" in capsys.readouterr().err
