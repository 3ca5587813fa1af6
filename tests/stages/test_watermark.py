"""Invisible watermark: payload code, round trips on the sample photos, robustness, false positives, vote."""

from __future__ import annotations

import io
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from masquerade._stages.watermark import (
    KEY_ID,
    PAYLOAD_BITS,
    WatermarkEmbedder,
    WatermarkReading,
    read_watermark,
    vote,
)
from masquerade.errors import MediaError
from masquerade.provenance import wmcode

PHOTOS = ["obama", "obama2", "biden", "astronaut"]


@pytest.fixture(scope="module")
def embed() -> WatermarkEmbedder:
    return WatermarkEmbedder()


@pytest.fixture(scope="module")
def pairs(request, embed) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Unmarked and marked version of each sample photo."""
    images = {name: request.getfixturevalue(name) for name in PHOTOS}
    return {name: (im, embed(im)) for name, im in images.items()}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse)


def _jpeg(im: np.ndarray, quality: int = 75) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def _crop(im: np.ndarray, fy: float, fx: float, keep: float = 0.9) -> np.ndarray:
    """Keep ``keep`` of each axis, starting at fractions (fy, fx) of the removed part."""
    h, w = im.shape[:2]
    ch, cw = round(h * keep), round(w * keep)
    y, x = round((h - ch) * fy), round((w - cw) * fx)
    return im[y : y + ch, x : x + cw]


def _half(im: np.ndarray) -> np.ndarray:
    return cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _bright(im: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(im.astype(np.float32) * factor, 0, 255).astype(np.uint8)


TRANSFORMS = {
    "identity": lambda im: im,
    "jpeg75": _jpeg,
    "downscale50": _half,
    "crop10_centre": lambda im: _crop(im, 0.5, 0.5),
    "crop10_top_left": lambda im: _crop(im, 1.0, 1.0),
    "crop10_one_side": lambda im: im[:, round(im.shape[1] * 0.1) :],
    "crop20_centre": lambda im: _crop(im, 0.5, 0.5, 0.8),  # today's reader searched crops to ~86 % only
    "crop30_centre": lambda im: _crop(im, 0.5, 0.5, 0.7),
    "crop30_bottom_right": lambda im: _crop(im, 1.0, 1.0, 0.7),
    "crop30_down50_jpeg75": lambda im: _jpeg(_half(_crop(im, 0.3, 0.6, 0.7))),
    "brightness+10": lambda im: _bright(im, 1.1),
    "brightness-10": lambda im: _bright(im, 0.9),
    "downscale50_jpeg75": lambda im: _jpeg(_half(im)),
}


def test_golay_code_has_distance_8_and_corrects_soft_errors() -> None:
    assert wmcode.golay_min_distance() == 8
    payload = wmcode.make_payload(KEY_ID)
    coded = wmcode.encode(payload)
    assert coded.shape == (wmcode.CODED_BITS,)
    rng = np.random.default_rng(0)
    noisy = coded + rng.normal(0, 0.6, coded.shape)  # about 5 % raw bit errors
    noisy[[0, 5, 9, 30, 31, 50]] *= -1  # and some certain ones, 2 per Golay word
    assert (np.sign(noisy) != coded).sum() >= 6
    decoded, agreement = wmcode.decode(noisy)
    assert decoded == payload
    assert 0.5 < agreement < 1.0


def test_decode_rejects_a_corrupted_checksum() -> None:
    coded = wmcode.encode(wmcode.make_payload(7)).reshape(3, 24)
    # Replace the last word (key id + CRC) by the codeword of a message with a wrong CRC.
    book = wmcode._golay_codebook()
    good = int(((book @ coded[2]) == 24).argmax())
    coded[2] = book[good ^ 0x1]
    payload, _ = wmcode.decode(coded.ravel())
    assert payload is None


def test_key_word_decodes_alone_when_the_magic_is_given() -> None:
    coded = wmcode.encode(wmcode.make_payload(42))
    soft = coded.copy()
    soft[:48] = -coded[:48]  # magic words read as their complement: the blind decode cannot succeed
    payload, _ = wmcode.decode(soft)
    assert payload is None or payload >> 8 != wmcode.MAGIC
    assert wmcode.decode_key(soft) == wmcode.make_payload(42)
    assert np.array_equal(wmcode.magic_bits(), wmcode.encode(wmcode.make_payload(200))[:48])


def test_payload_identifies_masquerade_and_key() -> None:
    assert PAYLOAD_BITS == 32
    payload = wmcode.make_payload(KEY_ID)
    assert payload >> 8 == wmcode.MAGIC and payload & 0xFF == KEY_ID
    with pytest.raises(ValueError):
        wmcode.make_payload(256)


@pytest.mark.parametrize("name", PHOTOS)
def test_round_trip_and_invisibility(pairs, name) -> None:
    original, marked = pairs[name]
    assert marked.shape == original.shape and marked.dtype == np.uint8
    assert not np.shares_memory(marked, original)
    assert _psnr(original, marked) >= 40.0
    reading = read_watermark(marked)
    assert reading.found
    assert reading.payload == wmcode.make_payload(KEY_ID)
    assert reading.key_id == KEY_ID
    assert reading.confidence > 0.5


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_survives_what_sharing_does(pairs, transform) -> None:
    fn = TRANSFORMS[transform]
    for name, (original, marked) in pairs.items():
        reading = read_watermark(fn(marked))
        assert reading.found, f"{name} after {transform}"
        assert reading.key_id == KEY_ID
        assert not read_watermark(fn(original)).found, f"false positive on unmarked {name} after {transform}"


def test_other_key_ids_are_read_back(astronaut) -> None:
    reading = read_watermark(_jpeg(WatermarkEmbedder(key_id=42)(astronaut)))
    assert reading.found and reading.key_id == 42 and reading.payload == wmcode.make_payload(42)


def test_unmarked_crops_and_noise_are_not_detected(biden, obama2) -> None:
    rng = np.random.default_rng(1)
    candidates = [biden[200:900, 100:900], obama2[:600], cv2.resize(biden, (320, 720))]
    candidates.append(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8))
    candidates.append(np.full((300, 400, 3), 128, dtype=np.uint8))
    for image in candidates:
        reading = read_watermark(image)
        assert not reading.found
        assert reading.payload is None and reading.key_id is None
        assert reading.confidence < 0.2


def _h264_round_trip(frames: list[np.ndarray], crf: int = 28) -> list[np.ndarray]:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")))
        out.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf) as src:
        return [fr.to_ndarray(format="bgr24") for fr in src.decode(video=0)]


def test_video_survives_h264_crf28_and_vote_decides(obama, embed) -> None:
    # A 640x360 pan across the photo, 12 frames.
    frames = []
    for i in range(12):
        m = np.array([[0.7, 0, -8.0 * i], [0, 0.7, -150.0]])
        frames.append(cv2.warpAffine(obama, m, (640, 360), borderMode=cv2.BORDER_REFLECT))
    marked = _h264_round_trip([embed(f) for f in frames])
    unmarked = _h264_round_trip(frames)
    marked_readings = [read_watermark(f) for f in marked[::2]]
    assert sum(r.found for r in marked_readings) >= 5
    decision = vote(marked_readings)
    assert decision.found and decision.key_id == KEY_ID and decision.confidence >= 0.8
    assert not vote([read_watermark(f) for f in unmarked[::2]]).found


def _reading(payload: int | None) -> WatermarkReading:
    if payload is None:
        return WatermarkReading(False, None, None, 0.0)
    return WatermarkReading(True, payload, payload & 0xFF, 0.9)


def test_vote_rules() -> None:
    ours, other = wmcode.make_payload(KEY_ID), wmcode.make_payload(9)
    assert not vote([]).found
    assert not vote([_reading(None)] * 20).found
    # A clear majority of frames, or a solid minority (partly masquerade output), decides.
    mostly = vote([_reading(ours)] * 15 + [_reading(None)] * 5)
    assert mostly.found and mostly.payload == ours and mostly.key_id == KEY_ID
    assert mostly.confidence == pytest.approx(0.75)
    assert vote([_reading(ours)] * 4 + [_reading(None)] * 26).found
    # One stray frame in a long clip does not decide it.
    assert not vote([_reading(ours)] + [_reading(None)] * 29).found
    # Two key ids at par: marked, but which key is undecided; a clear majority names it.
    par = vote([_reading(ours)] * 5 + [_reading(other)] * 4 + [_reading(None)] * 5)
    assert par.found and par.payload is None and par.key_id is None
    assert vote([_reading(ours)] * 9 + [_reading(other)] * 1).payload == ours
    # Frames where the mark was certain but the key unreadable count as found.
    unreadable = WatermarkReading(True, None, None, 0.1)
    assert vote([unreadable] * 6 + [_reading(ours)] * 2 + [_reading(None)] * 2).payload == ours
    assert vote([unreadable] * 3 + [_reading(None)] * 7).found
    # A single still frame decides by itself.
    assert vote([_reading(ours)]).found


def test_small_images_read_back(astronaut, embed) -> None:
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    assert read_watermark(_jpeg(embed(small))).found
    assert not read_watermark(_jpeg(small)).found


def test_bad_input_and_tiny_images(embed) -> None:
    with pytest.raises(MediaError):
        embed(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(MediaError):
        read_watermark(np.zeros((64, 64, 3), dtype=np.float32))
    tiny = np.full((20, 30, 3), 100, dtype=np.uint8)
    out = embed(tiny)
    assert out.shape == tiny.shape and out.dtype == np.uint8
    assert isinstance(read_watermark(out), WatermarkReading)


def test_pattern_follows_the_picture_when_resized(embed) -> None:
    # The cell size is a fixed fraction of the short side, so a half-size pattern is the full one halved.
    full = embed.pattern(720, 1280)
    half = embed.pattern(360, 640)
    shrunk = cv2.resize(full, (640, 360), interpolation=cv2.INTER_AREA)
    assert np.corrcoef(half.ravel(), shrunk.ravel())[0, 1] > 0.9


def test_mark_is_weak_on_flat_areas_and_strong_on_texture(embed) -> None:
    # Left half: a flat grey backdrop with a gentle ramp; right half: texture (smoothed noise).
    rng = np.random.default_rng(3)
    image = np.full((360, 640), 120.0, dtype=np.float32)
    image += np.linspace(-10, 10, 640, dtype=np.float32)[None, :]
    texture = cv2.GaussianBlur(rng.normal(0, 40, (360, 320)).astype(np.float32), (0, 0), 1.5)
    image[:, 320:] += texture
    image = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    diff = embed(image).astype(np.float64) - image
    flat_rms = np.sqrt(np.mean(diff[40:-40, 40:260] ** 2))
    textured_rms = np.sqrt(np.mean(diff[40:-40, 380:-40] ** 2))
    assert flat_rms < 1.2  # the uniform embedding put 2.2 grey levels RMS everywhere
    assert textured_rms > 2.5 * flat_rms
    assert read_watermark(_jpeg(embed(image))).found


def test_embedding_a_flat_picture_stays_faint_yet_readable(embed) -> None:
    flat = np.full((360, 640, 3), (90, 100, 110), dtype=np.uint8)
    marked = embed(flat)
    assert _psnr(flat, marked) > 45.0
    assert read_watermark(marked).found


@pytest.fixture(scope="module")
def footage_720p(embed) -> list[np.ndarray]:
    """Marked 720p frames of the benchmark's virtual camera over a real photo (flat backdrop, a face)."""
    from masquerade.bench.clips import _canvas, render_frame

    canvas, face = _canvas(cv2.imread(str(Path(__file__).parents[2] / "examples" / "obama2.jpg")))
    return [embed(render_frame(canvas, face, i / 25, (1280, 720), 1)) for i in range(40)]


def test_half_size_then_h264_crf28_keeps_the_mark_on_every_frame(footage_720p) -> None:
    # What sharing does: a 50 % downscale, then a CRF 28 re-encode (the old single fine layer: 70 %).
    half = _h264_round_trip([_half(f) for f in footage_720p])
    readings = [read_watermark(f) for f in half[1::2]]
    assert all(r.found for r in readings), [r.confidence for r in readings]
    assert vote(readings).key_id == KEY_ID
