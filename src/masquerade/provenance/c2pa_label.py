"""Content credentials on every output: a signed C2PA manifest, or a plain tag where C2PA cannot go.

The manifest says what the run did, as an ``EditSummary``. When faces were replaced: ``c2pa.edited``
by masquerade (software agent masquerade and its version) with the IPTC digital source type
``compositeWithTrainedAlgorithmicMedia``, and how many faces and frames. When none was (no face
matched): only ``c2pa.watermarked``, saying the picture is the target's, re-encoded, with masquerade's
invisible watermark: an unchanged output never claims a face swap. It is signed with the user's key
(``masquerade.provenance.keys``). JPEG, PNG, WebP, MP4, M4V and MOV carry it; Matroska and WebM cannot
(c2pa has no binding for them), so those get container tags saying the same
(``masquerade.provenance.plain_tags``).

Reading never touches the network: remote manifests and OCSP are not fetched.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from masquerade._version import __version__
from masquerade.errors import MediaError, OutputError, UsageError
from masquerade.provenance import wmcode
from masquerade.provenance.keys import SigningIdentity, signing_identity
from masquerade.provenance.plain_tags import (
    DIGITAL_SOURCE_TYPE,
    SOFTWARE,
    TAG_FORMATS,
    TAG_KEY,
    TAG_VALUES,
    EditSummary,
    container_tags,
    edit_description,
    ensure_tags,
)

C2PA_FORMATS: dict[str, str] = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
    ".mp4": "video/mp4", ".m4v": "video/x-m4v", ".mov": "video/quicktime",
}
"""Output formats that carry a C2PA manifest (suffix -> MIME type)."""
_SIGN_SETTINGS = {
    "builder": {"thumbnail": {"enabled": False}},  # thumbnails tripled a WebP's size
    # c2pa keeps assets below this size in memory while signing. At 1 MB it spills to disk at the same
    # speed: signing a 1500-frame, 25 MB MP4 peaks at +45 MiB instead of +69, a 6000-frame 100 MB one at
    # +117 instead of +213. What is left grows with the frame count (c2pa's BMFF hashing).
    "core": {"backing_store_memory_threshold_in_mb": 1},
}
_READ_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}

LabelKind = Literal["image", "video"]


@dataclass(frozen=True)
class LabelReading:
    """What a file's provenance metadata says."""

    kind: Literal["c2pa", "tag"] | None
    """``c2pa``: a manifest is embedded; ``tag``: only plain container tags; None: nothing found."""
    valid: bool = False
    """C2PA: the signature and the content hashes check out. Tags are never "valid": they are unsigned."""
    trusted: bool = False
    """C2PA: the signer chains to an anchor on a trust list (never for masquerade's self-made key)."""
    by_masquerade: bool = False
    """The manifest or tag names masquerade as the tool that made the edit."""
    validation_state: str | None = None
    """c2pa's verdict: ``Valid``, ``Trusted`` or ``Invalid`` (None without a manifest)."""
    claims: dict[str, Any] = field(default_factory=dict)
    """actions, digital_source_type, software_agent, claim_generator, signer, issuer, description, and
    faces_replaced (a count in a C2PA manifest, a yes/no in plain tags: 0 or False for an unchanged
    output that only carries the watermark)."""
    failures: tuple[str, ...] = ()
    """Validation failure codes (e.g. ``assertion.dataHash.mismatch`` after the pixels were edited)."""
    error: str | None = None
    """Why the metadata could not be read, when it could not."""

    @property
    def present(self) -> bool:
        return self.kind is not None

    @property
    def labelled(self) -> bool:
        """A valid masquerade manifest, or masquerade's plain AI tag where C2PA cannot go."""
        if self.kind == "c2pa":
            return self.valid and self.by_masquerade
        return self.kind == "tag" and self.by_masquerade


def label_method(path: Path) -> Literal["c2pa", "tag"]:
    """How an output at ``path`` will be labelled; ``UsageError`` for a format that cannot be labelled."""
    suffix = Path(path).suffix.lower()
    if suffix in C2PA_FORMATS:
        return "c2pa"
    if suffix in TAG_FORMATS:
        return "tag"
    raise UsageError(f"masquerade cannot label {suffix or 'extension-less'} outputs as AI-made; "
                     f"use one of {', '.join(sorted([*C2PA_FORMATS, *TAG_FORMATS]))}")


def manifest_definition(version: str, kind: LabelKind, edit: EditSummary) -> dict[str, Any]:
    """The manifest masquerade signs (the c2pa.opened action and parent ingredient are added by c2pa).

    It states what happened and nothing more: ``c2pa.edited`` with the AI-composite source type only
    when faces were replaced; ``c2pa.watermarked`` always (every output carries the invisible mark).
    """
    agent = {"name": SOFTWARE, "version": version}
    parameters = {
        "masquerade.media": kind,
        "masquerade.faces_replaced": edit.faces_replaced,
        "masquerade.frames": edit.frames,
        "masquerade.frames_changed": edit.frames_changed,
        "masquerade.action": edit.action,
    }
    actions: list[dict[str, Any]] = []
    if edit.replaced:
        actions.append({
            "action": "c2pa.edited",
            "softwareAgent": agent,
            "digitalSourceType": DIGITAL_SOURCE_TYPE,
            "description": edit_description(edit, kind),
            "parameters": parameters,
        })
    unit = "frame" if kind == "video" else "image"
    actions.append({
        "action": "c2pa.watermarked",
        "softwareAgent": agent,
        "description": f"masquerade's invisible watermark was added to every {unit}"
        if edit.replaced else edit_description(edit, kind),
        "parameters": parameters,
    })
    # c2pa.watermarked needs the soft binding it created: the watermark's name and payload.
    payload = wmcode.make_payload(wmcode.KEY_ID).to_bytes(4, "big")
    binding = {"alg": wmcode.SOFT_BINDING_ALG,
               "blocks": [{"scope": {}, "value": base64.b64encode(payload).decode("ascii")}]}
    return {
        "claim_generator_info": [agent],
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            {"label": "c2pa.soft-binding", "data": binding},
        ],
    }


def label_identity(path: Path) -> SigningIdentity | None:
    """The identity that will sign an output at ``path`` (None where a plain tag is used instead).

    Call it before the work that makes the output: a damaged key or an unusable certificate is then
    reported before the first frame, not after the whole video is encoded.
    """
    return signing_identity() if label_method(path) == "c2pa" else None


def label_file(
    path: Path,
    *,
    version: str = __version__,
    kind: LabelKind,
    edit: EditSummary,
    identity: SigningIdentity | None = None,
) -> None:
    """Label a finished output in place (call it on the temporary file, before the final rename).

    ``edit`` says what the run did (faces replaced or not): the label claims exactly that.
    ``identity`` defaults to the user's certificate from the environment, else masquerade's own key
    (created on first use). Raises ``OutputError`` when the label cannot be written: an output is
    never left unlabelled silently. Ctrl-C (or a terminating signal turned into ``KeyboardInterrupt``)
    during signing stops it: the file is left as it was and the interrupt propagates.
    """
    path = Path(path)
    if kind not in ("image", "video"):
        raise ValueError(f"kind must be 'image' or 'video', got {kind!r}")
    method = label_method(path)
    if method == "tag":
        ensure_tags(path, version, edit)
        return
    identity = identity or signing_identity()
    _sign_c2pa(path, C2PA_FORMATS[path.suffix.lower()], manifest_definition(version, kind, edit), identity)


@contextlib.contextmanager
def labelling(
    path: Path, *, kind: LabelKind, edit: Callable[[], EditSummary], version: str = __version__,
    identity: SigningIdentity | None = None,
) -> Iterator[Path]:
    """Label ``path`` when the block ends normally; leave it alone when the block raises.

    For writers built on an ``ExitStack``: enter it after ``atomic_output`` and before the muxer, so
    the muxer closes the file first, then the label is added, then the file is renamed into place.
    ``edit`` is asked at that moment what the run did (a video's count is known only at its end).
    The signing identity is resolved on entry (``identity``, else :func:`label_identity`), so a bad
    key stops the run before any work.
    """
    identity = identity or label_identity(path)
    yield path
    label_file(path, version=version, kind=kind, edit=edit(), identity=identity)


class _Stop(Exception):
    """Raised inside c2pa's stream callbacks to end its work early (they turn it into an I/O error)."""


class _WatchedFile:
    """A file for c2pa's stream callbacks that stops at the next read or write once ``cancel`` is set,
    and keeps the OSError c2pa would otherwise reduce to "I/O error" (a full disk must say so)."""

    def __init__(self, handle: Any, cancel: threading.Event) -> None:
        self._handle, self._cancel = handle, cancel
        self.error: OSError | None = None

    def _call(self, name: str, *args: Any) -> Any:
        if self._cancel.is_set():
            raise _Stop()
        try:
            return getattr(self._handle, name)(*args)
        except OSError as exc:
            self.error = exc
            raise

    def read(self, size: int = -1) -> bytes:
        return self._call("read", size)

    def readinto(self, buffer: Any) -> int:
        return self._call("readinto", buffer)

    def write(self, data: Any) -> int:
        return self._call("write", data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._call("seek", offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def flush(self) -> None:
        self._call("flush")


T = TypeVar("T")


def _off_the_main_thread(work: Callable[[threading.Event], T]) -> T:
    """Run ``work(cancel)`` on a worker thread and wait for it, interruptibly.

    c2pa calls back into Python for every read and write, and its callbacks swallow what they raise:
    a Ctrl-C landing inside one is printed as a traceback and lost (the run went on and exited 0).
    Python delivers signals to the main thread only, so the callbacks run on a worker; on an interrupt
    the worker is told to stop (its next read or write fails), waited for, and the interrupt re-raised.
    """
    cancel = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, work(cancel)))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name="masquerade-c2pa", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
    except BaseException:
        cancel.set()
        worker.join()
        raise
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _sign_c2pa(path: Path, mime: str, manifest: dict[str, Any], identity: SigningIdentity) -> None:
    import c2pa

    from masquerade.media.atomic import shown_path, temp_path, write_error

    temp = temp_path(path, "c2pa")
    files: list[_WatchedFile] = []

    def sign(cancel: threading.Event) -> None:
        signer = c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(identity.alg, identity.cert_chain_pem, identity.private_key_pem, None)
        )
        context = c2pa.Context(settings=c2pa.Settings.from_dict(_SIGN_SETTINGS), signer=signer)
        with c2pa.Builder(manifest, context=context) as builder:
            # EDIT: c2pa records the unlabelled output as the parent ingredient ("c2pa.opened"), which
            # the spec requires before a c2pa.edited action.
            builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
            with open(path, "rb") as source, open(temp, "w+b") as dest:
                files.extend((_WatchedFile(source, cancel), _WatchedFile(dest, cancel)))
                builder.sign(mime, files[0], files[1])
                files[1].flush()
                os.fsync(dest.fileno())  # a full disk shows here, not after the rename

    try:
        _off_the_main_thread(sign)
        shutil.copymode(path, temp)  # keep the permissions the writer chose
        os.replace(temp, path)
    except c2pa.C2paError as exc:
        failed = next((f.error for f in files if f.error is not None), None)
        if failed is not None:  # c2pa reports our stream's OSError as a bare "I/O error"
            raise write_error(path, failed, "write the content credentials of") from exc
        raise OutputError(
            f"could not sign the content credentials of {shown_path(path)} with {identity.origin}: {exc}"
        ) from exc
    except OSError as exc:
        raise write_error(path, exc, "write the content credentials of") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def read_label(path: Path) -> LabelReading:
    """Read the C2PA manifest (or, failing that, masquerade's plain tags) of ``path``.

    Raises ``MediaError`` only when the file itself cannot be read; damaged or unsupported metadata is
    reported in the reading.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise MediaError(f"{path} is not readable: {exc.strerror}") from exc
    reading = _read_c2pa(path)
    if reading.kind == "c2pa":
        return reading
    tags = container_tags(path)
    if tags and tags.get(TAG_KEY) in TAG_VALUES:
        claims = {
            "description": tags.get("comment"),
            "software_agent": f"{SOFTWARE} {tags.get('masquerade_version', '?')}",
            "digital_source_type": tags.get("digital_source_type"),
            "faces_replaced": tags.get(TAG_KEY) == TAG_VALUES[0],
        }
        return LabelReading(kind="tag", by_masquerade=True, claims=claims)
    return reading


def _mime(path: Path) -> str:
    return C2PA_FORMATS.get(path.suffix.lower(), "")


def _read_c2pa(path: Path) -> LabelReading:
    import c2pa

    def read(cancel: threading.Event) -> dict[str, Any] | None:
        context = c2pa.Context(settings=c2pa.Settings.from_dict(_READ_SETTINGS))
        with open(path, "rb") as handle:
            reader = c2pa.Reader.try_create(_mime(path) or None, _WatchedFile(handle, cancel), None, context)
            if reader is None:
                return None
            with reader:
                return json.loads(reader.json())

    try:
        store = _off_the_main_thread(read)  # Ctrl-C must not land inside c2pa's callbacks
        if store is None:
            return LabelReading(kind=None)
    except c2pa.C2paError.NotSupported:
        return LabelReading(kind=None)
    except c2pa.C2paError as exc:
        # A manifest that is there but cannot be parsed is not a label: say so.
        return LabelReading(kind=None, error=f"unreadable C2PA data: {exc}")
    return _interpret(store)


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            actions.extend(assertion.get("data", {}).get("actions", []))
    return actions


def _made_by_masquerade(manifest: dict[str, Any]) -> bool:
    agents = [a.get("softwareAgent") for a in _actions(manifest)]
    generators = manifest.get("claim_generator_info") or []
    return any(isinstance(a, dict) and a.get("name") == SOFTWARE for a in agents) or any(
        g.get("name") == SOFTWARE for g in generators if isinstance(g, dict)
    )


def _interpret(store: dict[str, Any]) -> LabelReading:
    manifests: dict[str, Any] = store.get("manifests", {})
    active = manifests.get(store.get("active_manifest", ""), {})
    # If another tool edited the file after masquerade, masquerade's manifest is an ingredient's:
    # describe that one, since it is the one that says "AI face swap".
    ours = [m for m in manifests.values() if _made_by_masquerade(m)]
    manifest = active if not ours or _made_by_masquerade(active) else ours[0]
    state = store.get("validation_state")
    failures = tuple(
        str(item.get("code"))
        for item in (store.get("validation_results") or {}).get("activeManifest", {}).get("failure", [])
    )
    actions = _actions(manifest)
    # The action that says what masquerade did: the AI edit when there is one, else its watermark.
    ours = [a for a in actions if isinstance(a.get("softwareAgent"), dict)
            and a["softwareAgent"].get("name") == SOFTWARE]
    edit = next((a for a in actions if a.get("digitalSourceType")), None) or (ours[0] if ours else {})
    parameters = edit.get("parameters") or {}
    agent = edit.get("softwareAgent") or {}
    if isinstance(agent, dict):
        agent = f"{agent.get('name', '')} {agent.get('version', '')}".strip()
    generators = manifest.get("claim_generator_info") or [{}]
    generator = f"{generators[0].get('name', '')} {generators[0].get('version', '')}".strip()
    signature = manifest.get("signature_info") or {}
    claims = {
        "actions": [a.get("action") for a in actions],
        "digital_source_type": edit.get("digitalSourceType"),
        "software_agent": agent or None,
        "claim_generator": generator or None,
        "description": edit.get("description"),
        "faces_replaced": parameters.get("masquerade.faces_replaced"),  # None: an older manifest
        "signer": signature.get("common_name"),
        "issuer": signature.get("issuer"),
        "signing_time": signature.get("time"),
    }
    return LabelReading(
        kind="c2pa",
        valid=state in ("Valid", "Trusted"),
        trusted=state == "Trusted",
        by_masquerade=bool(ours),
        validation_state=state,
        claims=claims,
        failures=failures,
    )
