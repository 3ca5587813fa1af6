"""The per-user model cache: where model files live, how they get there, and whether they are intact.

Layout of the cache folder (``MASQUERADE_HOME/models`` or the platform's per-user cache):
``<file_name>`` the models; ``<file_name>.part`` unfinished downloads; ``archives/`` verified zips that
still hold models not yet extracted; ``verified.json`` the hash last seen of each file, and which files
the user imported with an unknown hash (``--allow-unknown-hash``); ``licences-shown.json``.

Nothing in the folder is trusted for being there: a run reads each model file once, hashes exactly
those bytes and builds its session from them (:meth:`ModelStore.load`), so a file replaced behind a
forged ``verified.json`` entry is caught, and no file reaches ONNX Runtime or PyTorch unhashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from masquerade.errors import ChecksumMismatch, ModelError, ModelNotCached, UsageError
from masquerade.models.download import (
    Progress,
    RetryPolicy,
    Status,
    extract_verified,
    fetch_verified,
    sha256_file,
)
from masquerade.models.manifest import MODELS, ModelSpec

_Status = Literal["ok", "accepted", "mismatch"]


def default_home() -> Path:
    """``MASQUERADE_HOME``, else the platform's per-user cache folder for masquerade."""
    env = os.environ.get("MASQUERADE_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else Path.home() / "AppData" / "Local") / "masquerade"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "masquerade"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "masquerade"


def licence_notice(spec: ModelSpec) -> str | None:
    """The notice to show before a non-commercial model is first used (None for other models)."""
    if spec.commercial_use:
        return None
    where = f" ({spec.licence_url})" if spec.licence_url else ""
    return f"{spec.name} is under the {spec.licence}{where}; you are responsible for complying with it."


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path
    status: Literal["ok", "accepted", "mismatch", "missing"]
    """ok: a pinned hash; accepted: an unknown hash the user imported with a flag; mismatch; missing."""
    sha256: str | None = None


@dataclass(frozen=True)
class VerifiedModel:
    """A model file's bytes, read once and hashed: a session is built from exactly these bytes."""

    name: str
    path: Path
    sha256: str
    known_hash: bool
    """False for a file the user imported with ``--allow-unknown-hash``: loaded, but not vouched for."""
    data: bytes = field(repr=False)

    def unverified_notice(self) -> str | None:
        """What every run using an unverified file says (None for a file with a pinned hash)."""
        if self.known_hash:
            return None
        return (f"{self.name}: {self.path.name} is unverified (SHA-256 {self.sha256[:16]}..., imported with "
                "--allow-unknown-hash); masquerade does not vouch for its results")


def read_hashed(path: Path) -> tuple[bytes, str]:
    """The file's bytes, read once, and the SHA-256 of exactly those bytes."""
    with open(path, "rb") as f:
        data = f.read()
    return data, hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ImportResult:
    name: str
    path: Path
    sha256: str
    known_hash: bool
    """False when the file was accepted with ``allow_unknown_hash`` (the caller should warn)."""


class ModelStore:
    """A model cache folder. Cheap to create; touches the disk only when asked."""

    def __init__(self, root: Path | None = None, retry: RetryPolicy | None = None,
                 models: Mapping[str, ModelSpec] = MODELS) -> None:
        self.root = Path(root) if root is not None else default_home() / "models"
        self.retry = retry or RetryPolicy()
        self.models = models
        """The registry this store serves (the built-in one; tests pass their own)."""

    def spec(self, name: str) -> ModelSpec:
        """The declaration of model ``name``; a UsageError lists the known names otherwise."""
        return _lookup(self.models, name)

    def path(self, spec: ModelSpec) -> Path:
        return self.root / spec.file_name

    @property
    def int8_dir(self) -> Path:
        """Where ``--precision int8`` keeps the int8 models it derives from this cache's files."""
        return self.root / "int8"

    def is_installed(self, spec: ModelSpec) -> bool:
        return self.path(spec).is_file()

    # -- using models -------------------------------------------------------------------------------

    def require(self, specs: Sequence[ModelSpec]) -> dict[str, Path]:
        """Paths of these models once all are there; one ModelNotCached names every missing file.

        Presence only: each file is hashed when it is loaded (:meth:`load`), from the bytes loaded.
        """
        missing = [s for s in specs if not self.is_installed(s)]
        if missing:
            raise ModelNotCached(self.missing_message(missing))
        return {spec.name: self.path(spec) for spec in specs}

    def load(self, spec: ModelSpec) -> VerifiedModel:
        """The installed file's bytes, read once and hashed; ChecksumMismatch unless the hash is one
        masquerade pins for ``spec`` or one the user accepted at import."""
        path = self.path(spec)
        if not path.is_file():
            raise ModelNotCached(self.missing_message([spec]))
        try:
            data, digest = read_hashed(path)
        except OSError as error:
            raise ModelError(f"could not read {path}: {error.strerror or error}") from None
        status = self._status_of(spec, digest)
        if status == "mismatch":
            raise self._mismatch(spec, digest)
        return VerifiedModel(spec.name, path, digest, status == "ok", data)

    def _mismatch(self, spec: ModelSpec, digest: str) -> ChecksumMismatch:
        return ChecksumMismatch(
            f"{self.path(spec)} has SHA-256 {digest}, not one masquerade accepts for {spec.name}; "
            f"`masquerade models download {spec.name}` replaces it"
        )

    def digest(self, spec: ModelSpec) -> str:
        """SHA-256 of the installed file (hashed now)."""
        return self._check(spec)[1]

    def missing_message(self, specs: Sequence[ModelSpec]) -> str:
        """One line: which files are missing, where they go, and the commands that bring them (models
        without a pinned hash cannot be downloaded: for those, the import command that works)."""
        files = ", ".join(s.file_name for s in specs)
        noun = "model file" if len(specs) == 1 else "model files"
        pinned = " ".join(s.name for s in specs if s.pinned)
        steps = [f"run `masquerade models download {pinned}` (or import files you have with "
                 "`masquerade models import FILE`)"] if pinned else []
        steps += [f"get {s.file_name} yourself and run `{import_command(s)}`" for s in specs if not s.pinned]
        return f"missing {noun} {files} in {self.root}: {'; '.join(steps)}"

    def take_licence_notice(self, spec: ModelSpec) -> str | None:
        """The licence notice of ``spec`` the first time it is asked for in this cache, else None."""
        notice = licence_notice(spec)
        if notice is None:
            return None
        shown = self._read_json("licences-shown.json")
        if shown.get(spec.name) == spec.licence:
            return None
        shown[spec.name] = spec.licence
        self._write_json("licences-shown.json", shown)
        return notice

    # -- getting models -----------------------------------------------------------------------------

    def download(self, spec: ModelSpec, progress: Progress | None = None, offline: bool = False,
                 status: Status | None = None) -> Path:
        """Fetch ``spec`` into the cache (verified, resumable) unless a good copy is already there.
        ``status`` hears about connections, retries and mirrors given up."""
        dest = self.path(spec)
        if dest.is_file():
            if self._check(spec)[0] != "mismatch":
                return dest
            dest.unlink()  # a damaged or foreign file in our cache: replace it
        if offline:
            raise ModelNotCached(self.missing_message([spec]) + " (offline: downloads are off)")
        if not spec.pinned:
            raise ModelError(
                f"masquerade pins no SHA-256 for {spec.name}, so it will not download it; get "
                f"{spec.file_name} yourself and run `{import_command(spec)}`"
            )
        failures: list[str] = []
        if spec.urls or spec.archive is None:
            try:
                digest = fetch_verified(spec.urls, spec.sha256, dest, progress=progress,
                                        expected_size=spec.size if len(spec.sha256) == 1 else None,
                                        retry=self.retry, status=status)
                self._stamp(spec, digest)
                return dest
            except ChecksumMismatch as error:
                if spec.archive is None:
                    raise
                failures.append(str(error))
            except ModelError as error:
                failures.append(str(error))
        if spec.archive is not None:
            try:
                return self._from_archive(spec, progress, status)
            except ChecksumMismatch:
                raise
            except ModelError as error:
                failures.append(str(error))
        raise ModelNotCached(f"{'; '.join(failures)}; you can also put {spec.file_name} into {self.root} "
                             "with `masquerade models import FILE`")

    def ensure(self, specs: Sequence[ModelSpec], progress: Progress | None = None,
               offline: bool = False) -> dict[str, Path]:
        """Like :meth:`require`, but first downloads the missing models unless ``offline``.

        Nothing is downloaded when any missing model cannot be (offline, or no pinned hash): one
        ModelNotCached then names every missing file.
        """
        missing = [s for s in specs if not self.is_installed(s)]
        unpinned = [s for s in missing if not s.pinned]
        if missing and (offline or unpinned):
            why = (" (offline: downloads are off)" if offline else
                   f" ({', '.join(s.name for s in unpinned)}: no pinned SHA-256, so only an import can "
                   "add it)")
            raise ModelNotCached(self.missing_message(missing) + why)
        for spec in missing:
            self.download(spec, progress)
        return self.require(specs)

    def _from_archive(self, spec: ModelSpec, progress: Progress | None, status: Status | None = None) -> Path:
        assert spec.archive is not None
        archive = self.root / "archives" / spec.archive.urls[0].rsplit("/", 1)[-1]
        if not archive.is_file() or sha256_file(archive) not in spec.archive.sha256:
            fetch_verified(spec.archive.urls, spec.archive.sha256, archive, progress=progress,
                           expected_size=spec.archive.size, retry=self.retry, status=status)
        dest = self.path(spec)
        self._stamp(spec, extract_verified(archive, spec.archive.member, spec.sha256, dest))
        # Keep the zip only while another model still needs to be extracted from it.
        users = [s for s in self.models.values() if s.archive and s.archive.urls == spec.archive.urls]
        if all(self.is_installed(s) for s in users):
            archive.unlink(missing_ok=True)
        return dest

    def import_file(self, path: Path, spec_name: str | None = None, allow_unknown_hash: bool = False,
                    link: bool = False) -> ImportResult:
        """Bring a file the user already has into the cache, after checking its hash and contract."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise UsageError(f"{path} is not a file")
        digest = sha256_file(path)
        spec = self.spec(spec_name) if spec_name else self._spec_for_hash(digest)
        if spec is None:
            guess = next((s for s in self.models.values() if s.file_name == path.name), None)
            hint = (f"if it is {guess.name}, run `{import_command(guess, path)}`" if guess is not None
                    else "name the model with --name NAME --allow-unknown-hash to import it anyway")
            raise UsageError(f"{path.name} (SHA-256 {digest}) is no model file masquerade knows; {hint}")
        known = digest in spec.sha256
        if not known and not allow_unknown_hash:
            raise ChecksumMismatch(f"{path.name} has SHA-256 {digest}, not one masquerade accepts for "
                                   f"{spec.name}; `{import_command(spec, path)}` imports it anyway")
        from masquerade.models.contract import contract_problems, read_contract

        problems = contract_problems(read_contract(path), spec.contract)
        if problems:
            raise ModelError(f"{path.name} does not fit {spec.name}'s contract: {'; '.join(problems)}")
        dest = self.path(spec)
        self.root.mkdir(parents=True, exist_ok=True)
        if dest.resolve() != path.resolve():
            tmp = dest.with_name(dest.name + ".import")
            tmp.unlink(missing_ok=True)
            try:
                if link:
                    tmp.symlink_to(path.resolve())
                else:
                    shutil.copyfile(path, tmp)
                os.replace(tmp, dest)
            except OSError as error:
                tmp.unlink(missing_ok=True)
                how = "link" if link else "copy"
                raise ModelError(f"could not {how} {path} to {dest}: {error.strerror or error}") from None
        self._stamp(spec, digest, user_accepted=not known)
        return ImportResult(spec.name, dest, digest, known)

    # -- checking models ----------------------------------------------------------------------------

    def verify(self, specs: Iterable[ModelSpec] | None = None) -> list[VerifyResult]:
        """Re-hash every (or each given) model file and report its status."""
        results = []
        for spec in self.models.values() if specs is None else specs:
            if not self.is_installed(spec):
                results.append(VerifyResult(spec.name, self.path(spec), "missing"))
                continue
            status, digest = self._check(spec)
            results.append(VerifyResult(spec.name, self.path(spec), status, digest))
        return results

    def status(self, spec: ModelSpec) -> Literal["ok", "accepted", "mismatch", "missing"]:
        """One :meth:`verify` entry: the file is hashed (a recorded hash proves nothing about the file)."""
        return self._check(spec)[0] if self.is_installed(spec) else "missing"

    def _check(self, spec: ModelSpec) -> tuple[_Status, str]:
        """Hash status of an installed file, hashed now."""
        digest = sha256_file(self.path(spec))
        return self._status_of(spec, digest), digest

    def _status_of(self, spec: ModelSpec, digest: str) -> _Status:
        """ok: a hash masquerade pins; accepted: the hash the user imported with --allow-unknown-hash."""
        if digest in spec.sha256:
            self._stamp(spec, digest)
            return "ok"
        stamp = self._read_json("verified.json").get(spec.file_name)
        if isinstance(stamp, dict) and stamp.get("user_accepted") and stamp.get("sha256") == digest:
            return "accepted"
        return "mismatch"

    def _stamp(self, spec: ModelSpec, digest: str, user_accepted: bool = False) -> None:
        stamps = self._read_json("verified.json")
        entry: dict[str, Any] = {"sha256": digest}
        if user_accepted:
            entry["user_accepted"] = True
        if stamps.get(spec.file_name) != entry:
            stamps[spec.file_name] = entry
            self._write_json("verified.json", stamps)

    def _read_json(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.root / name)

    def _spec_for_hash(self, digest: str) -> ModelSpec | None:
        return next((s for s in self.models.values() if digest in s.sha256), None)


def _lookup(models: Mapping[str, ModelSpec], name: str) -> ModelSpec:
    if name not in models:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(models)}")
    return models[name]


def import_command(spec: ModelSpec, path: Path | str = "FILE") -> str:
    """The ``models import`` command that takes a file of ``spec`` whatever its hash."""
    return f"masquerade models import --name {spec.name} --allow-unknown-hash {path}"
