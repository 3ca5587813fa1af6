"""Content credentials: sign -> read round trips per format, tampering, stripping, plain tags."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from masquerade._version import __version__
from masquerade.errors import OutputError, UsageError
from masquerade.provenance import (
    EditSummary,
    SigningIdentity,
    label_file,
    label_method,
    labelling,
    plain_metadata_tags,
    read_label,
)
from masquerade.provenance.plain_tags import DIGITAL_SOURCE_TYPE, TAG_KEY

SWAPPED = EditSummary(faces_replaced=1, frames=1, frames_changed=1)


def _assert_masquerade_manifest(reading) -> None:
    assert reading.kind == "c2pa" and reading.present
    assert reading.valid and reading.labelled and reading.by_masquerade
    assert not reading.trusted and reading.validation_state == "Valid"  # our own CA is on no trust list
    claims = reading.claims
    assert "c2pa.edited" in claims["actions"]
    assert claims["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert claims["software_agent"] == f"masquerade {__version__}"
    assert claims["signer"] == "masquerade AI face swap signer"


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_image_round_trip(home, tmp_path, astronaut, suffix):
    path = tmp_path / f"out{suffix}"
    cv2.imwrite(str(path), astronaut)
    before = cv2.imread(str(path))
    unlabelled = read_label(path)
    assert unlabelled.kind is None and not unlabelled.labelled

    size = path.stat().st_size
    label_file(path, version=__version__, kind="image", edit=SWAPPED)

    _assert_masquerade_manifest(read_label(path))
    assert np.array_equal(cv2.imread(str(path)), before)  # the pixels are untouched
    assert path.stat().st_size - size < 20_000  # no thumbnails: a few kB of manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", path.name]  # no temp file left


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".m4v"])
def test_video_round_trip(home, tmp_path, make_video, count_frames, suffix):
    frames = [np.full((96, 128, 3), 10 * i, np.uint8) for i in range(12)]
    path = make_video(tmp_path / f"clip{suffix}", frames, audio="aac")
    counts = count_frames(path)
    assert read_label(path).kind is None

    label_file(path, kind="video", edit=SWAPPED)

    _assert_masquerade_manifest(read_label(path))
    assert count_frames(path) == counts  # still plays, audio included


@pytest.mark.parametrize(
    "suffix,codec,audio", [(".mkv", "libx264", "aac"), (".webm", "libvpx-vp9", "libopus")]
)
def test_containers_without_c2pa_get_plain_tags(
    home, tmp_path, make_video, count_frames, suffix, codec, audio
):
    assert label_method(Path(f"x{suffix}")) == "tag"
    frames = [np.full((96, 128, 3), 10 * i, np.uint8) for i in range(12)]
    path = make_video(tmp_path / f"clip{suffix}", frames, codec=codec, audio=audio)
    counts = count_frames(path)

    label_file(path, kind="video", edit=SWAPPED)

    reading = read_label(path)
    assert reading.kind == "tag" and reading.labelled and not reading.valid  # unsigned: never "valid"
    assert "AI face swap" in reading.claims["description"]
    assert reading.claims["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert count_frames(path) == counts  # the stream-copy remux lost no frame (MKV packets lack dts)
    assert not (home / "keys").exists()  # no signing needed


def test_tags_set_by_the_writer_are_not_remuxed_again(home, tmp_path, make_video):
    frames = [np.zeros((64, 64, 3), np.uint8)] * 4
    path = make_video(tmp_path / "clip.mkv", frames, tags=plain_metadata_tags())
    data = path.read_bytes()
    label_file(path, kind="video", edit=SWAPPED)
    assert path.read_bytes() == data
    assert read_label(path).labelled


def test_plain_tags_name_the_version():
    tags = plain_metadata_tags("9.9")
    assert tags[TAG_KEY] == "ai-face-swap" and tags["masquerade_version"] == "9.9"
    assert "AI face swap" in tags["comment"] and "9.9" in tags["comment"]


def test_edited_pixels_invalidate_the_manifest(home, tmp_path, astronaut):
    path = tmp_path / "out.png"
    cv2.imwrite(str(path), astronaut, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    label_file(path, kind="image", edit=SWAPPED)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the (uncompressed) image data, far from the manifest
    path.write_bytes(bytes(data))

    reading = read_label(path)
    assert reading.kind == "c2pa" and reading.by_masquerade
    assert not reading.valid and not reading.labelled and reading.validation_state == "Invalid"
    assert any("mismatch" in code for code in reading.failures)


def test_re_encoding_strips_the_manifest(home, tmp_path, astronaut):
    path = tmp_path / "out.jpg"
    cv2.imwrite(str(path), astronaut)
    label_file(path, kind="image", edit=SWAPPED)
    copy = tmp_path / "copy.jpg"
    cv2.imwrite(str(copy), cv2.imread(str(path)), [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert read_label(copy).kind is None


def test_formats_that_cannot_be_labelled_are_refused(home, tmp_path, astronaut):
    for name in ("out.bmp", "out.gif", "out.avi", "noext"):
        with pytest.raises(UsageError):
            label_method(Path(name))
    path = tmp_path / "out.bmp"
    cv2.imwrite(str(path), astronaut)
    with pytest.raises(UsageError):
        label_file(path, kind="image", edit=SWAPPED)


def test_a_certificate_c2pa_rejects_fails_loudly_and_leaves_the_file(home, tmp_path, astronaut):
    # A self-signed leaf is what a naive setup would make; c2pa refuses it. Signing must not
    # silently produce an unlabelled output.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=9))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    identity = SigningIdentity.from_pem(key_pem, cert.public_bytes(serialization.Encoding.PEM), "test cert")
    path = tmp_path / "out.jpg"
    cv2.imwrite(str(path), astronaut)
    data = path.read_bytes()
    with pytest.raises(OutputError, match="test cert"):
        label_file(path, kind="image", edit=SWAPPED, identity=identity)
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg"]


def test_a_user_identity_passed_in_the_api_signs(home, tmp_path, astronaut):
    from masquerade.provenance.keys import create_key_and_chain

    key_pem, chain_pem = create_key_and_chain()
    identity = SigningIdentity.from_pem(key_pem, chain_pem, "my cert")
    path = tmp_path / "out.webp"
    cv2.imwrite(str(path), astronaut)
    label_file(path, kind="image", edit=SWAPPED, identity=identity)
    assert read_label(path).labelled
    assert not (home / "keys").exists()


def test_reading_a_missing_file_is_a_media_error(tmp_path):
    from masquerade.errors import MediaError

    with pytest.raises(MediaError):
        read_label(tmp_path / "nope.jpg")


def test_a_labelled_file_copied_elsewhere_keeps_its_label(home, tmp_path, astronaut):
    path = tmp_path / "out.jpg"
    cv2.imwrite(str(path), astronaut)
    label_file(path, kind="image", edit=SWAPPED)
    moved = tmp_path / "renamed.jpeg"
    shutil.copy(path, moved)
    assert read_label(moved).labelled


def test_labelling_context_labels_on_success_only(home, tmp_path, make_video):
    import contextlib

    from masquerade.media.atomic import atomic_output

    frames = [np.full((64, 64, 3), 30 * i, np.uint8) for i in range(4)]
    output = tmp_path / "out.mp4"
    with contextlib.ExitStack() as stack:  # the order a writer uses: temp, label, then the muxer
        temp = stack.enter_context(atomic_output(output))
        stack.enter_context(labelling(temp, kind="video", edit=lambda: SWAPPED))
        make_video(temp, frames)
    assert read_label(output).labelled

    failed = tmp_path / "failed.mp4"
    with pytest.raises(RuntimeError), contextlib.ExitStack() as stack:
        temp = stack.enter_context(atomic_output(failed))
        stack.enter_context(labelling(temp, kind="video", edit=lambda: SWAPPED))
        make_video(temp, frames)
        raise RuntimeError("refused mid-run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out.mp4"]  # no failed.mp4, no temp


def test_an_unchanged_output_claims_only_the_watermark(home, tmp_path, astronaut):
    path = tmp_path / "unchanged.png"
    cv2.imwrite(str(path), astronaut)
    label_file(path, kind="image", edit=EditSummary(faces_replaced=0))

    reading = read_label(path)
    assert reading.valid and reading.by_masquerade and reading.labelled
    claims = reading.claims
    assert "c2pa.watermarked" in claims["actions"] and "c2pa.edited" not in claims["actions"]
    assert claims["digital_source_type"] is None and claims["faces_replaced"] == 0
    assert "no face was replaced" in claims["description"]
    assert claims["software_agent"] == f"masquerade {__version__}"


def test_a_video_swap_says_how_many_frames_changed(home, tmp_path, make_video):
    frames = [np.full((96, 128, 3), 10 * i, np.uint8) for i in range(12)]
    path = make_video(tmp_path / "clip.mp4", frames)
    label_file(path, kind="video", edit=EditSummary(faces_replaced=14, frames=12, frames_changed=10))
    claims = read_label(path).claims
    assert claims["actions"][-2:] == ["c2pa.edited", "c2pa.watermarked"]
    assert claims["digital_source_type"] == DIGITAL_SOURCE_TYPE and claims["faces_replaced"] == 14
    assert "in 10 of 12 frames" in claims["description"]


def test_face_swap_tags_of_an_unchanged_video_are_rewritten(home, tmp_path, make_video):
    # The writer tags a Matroska file as a face swap while muxing; a run that replaced nothing must not
    # leave that claim behind.
    frames = [np.zeros((64, 64, 3), np.uint8)] * 4
    path = make_video(tmp_path / "clip.mkv", frames, tags={**plain_metadata_tags(), "title": "kept"})
    label_file(path, kind="video", edit=EditSummary(faces_replaced=0, frames=4))
    reading = read_label(path)
    assert reading.kind == "tag" and reading.labelled and reading.claims["faces_replaced"] is False
    assert reading.claims["digital_source_type"] is None
    assert "AI face swap" not in reading.claims["description"]
    with av.open(str(path)) as container:
        assert container.metadata.get("title") == "kept"
