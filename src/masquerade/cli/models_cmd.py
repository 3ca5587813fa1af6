"""``masquerade models list|download|import|verify``: manage the model cache."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from masquerade.errors import MasqueradeError, ModelError
from masquerade.models.manifest import MODELS
from masquerade.models.store import ModelStore, licence_notice


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command and its sub-commands."""
    models = subparsers.add_parser(
        "models", help="list, download, import and verify model files",
        description="The neural models live in a verified cache: every file is checked against the SHA-256 "
                    "values masquerade knows before it is used. The embedded default needs none of them.")
    models.add_argument("--models-dir", type=Path, metavar="DIR",
                        help="model cache folder (default: $MASQUERADE_HOME/models or the per-user cache)")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="known models: licence, size, installed and verified or not",
                   description="List every model masquerade knows: kind, size, whether it is installed "
                               "(each installed file is hashed: yes, unverified or TAMPERED), licence.")
    download = sub.add_parser(
        "download", help="download models (resumable, SHA-256 verified)",
        description="Download each named model from its known addresses, resuming a broken transfer, and "
                    "keep it only if its SHA-256 is one masquerade knows. Every name is tried; the failures "
                    "are reported together at the end.")
    download.add_argument("names", nargs="+", metavar="NAME", help=f"model names: {', '.join(MODELS)}")
    download.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    imp = sub.add_parser(
        "import", help="copy or link a model file you already have into the cache",
        description="Put a model file you already have into the cache. Its SHA-256 says which model it is; "
                    "a file masquerade has no hash for (e.g. CodeFormer) needs --name and "
                    "--allow-unknown-hash. Its inputs and outputs are checked against the model's contract.")
    imp.add_argument("path", type=Path, metavar="PATH", help="the .onnx file to import")
    imp.add_argument("--name", choices=tuple(MODELS), metavar="NAME",
                     help="which model the file is (default: found from its SHA-256); one of "
                          f"{', '.join(MODELS)}")
    imp.add_argument("--allow-unknown-hash", action="store_true",
                     help="accept a file whose SHA-256 masquerade does not know (contract still checked; "
                          "every run using it says so)")
    imp.add_argument("--link", action="store_true",
                     help="symlink the file instead of copying it (default: copy)")
    verify = sub.add_parser("verify", help="re-hash installed models",
                            description="Hash every installed model file (or the named ones) again and say "
                                        "which match the SHA-256 masquerade knows.")
    verify.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: all installed)")
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = ModelStore(args.models_dir)
    action: Callable[[ModelStore, argparse.Namespace], int] = {
        "list": _list, "download": _download, "import": _import, "verify": _verify,
    }[args.models_command]
    return action(store, args)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


_INSTALLED = {
    "ok": "yes",
    "accepted": "unverified (imported with --allow-unknown-hash)",
    "mismatch": "TAMPERED (hash mismatch)",
}


def _list(store: ModelStore, args: argparse.Namespace) -> int:
    rows = [("NAME", "KIND", "SIZE", "INSTALLED", "LICENCE")]
    tampered = []
    for spec in store.models.values():
        status = store.status(spec)  # hashes the file: a recorded hash proves nothing
        if status == "missing":
            installed = "no" if spec.pinned else "no (import only)"
        else:
            installed = _INSTALLED[status]
        if status == "mismatch":
            tampered.append(spec.name)
        size = _size(store.path(spec).stat().st_size if store.is_installed(spec) else spec.size)
        rows.append((spec.name, spec.kind, size, installed, spec.licence))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    print(f"cache: {store.root}")
    if tampered:
        names = " ".join(tampered)
        print(f"warning: {names}: the file is not one masquerade accepts and will not be loaded; "
              f"`masquerade models download {names}` replaces it", file=sys.stderr)
    return 0


def _download(store: ModelStore, args: argparse.Namespace) -> int:
    """Every requested model is tried, whatever happens to the others; the failures are reported together."""
    specs = [store.spec(name) for name in dict.fromkeys(args.names)]  # validate all names first
    failures: list[tuple[str, MasqueradeError]] = []
    for spec in specs:
        if store.is_installed(spec) and store.status(spec) != "mismatch":
            print(f"{spec.name}: already installed ({store.path(spec)})")
            continue
        notice = licence_notice(spec)
        if notice:
            print(f"note: {notice}", file=sys.stderr)

        def status(message: str, name: str = spec.name) -> None:
            print(f"{name}: {message}", file=sys.stderr, flush=True)

        try:
            with _progress_bar(spec.file_name, quiet=args.quiet) as progress:
                path = store.download(spec, progress=progress, status=None if args.quiet else status)
        except MasqueradeError as error:
            failures.append((spec.name, error))
            if len(specs) > 1:
                print(f"{spec.name}: FAILED: {error}", file=sys.stderr)
            continue
        store.take_licence_notice(spec)  # seen now: the first use will not repeat it
        print(f"{spec.name}: downloaded and verified ({path})")
    if len(failures) == 1:
        raise failures[0][1]
    if failures:  # each was printed in full as it happened
        raise ModelError(f"{len(failures)} of {len(specs)} models could not be downloaded "
                         f"({', '.join(name for name, _ in failures)}; the reasons are above)")
    return 0


def _import(store: ModelStore, args: argparse.Namespace) -> int:
    result = store.import_file(args.path, args.name, allow_unknown_hash=args.allow_unknown_hash,
                               link=args.link)
    if not result.known_hash:
        print(f"warning: {args.path} has SHA-256 {result.sha256}, which masquerade does not know for "
              f"{result.name}; it was imported because of --allow-unknown-hash and its results are "
              "not vouched for", file=sys.stderr)
    how = "linked" if args.link else "copied"
    print(f"{result.name}: {how} to {result.path} (input/output contract checked)")
    return 0


def _verify(store: ModelStore, args: argparse.Namespace) -> int:
    specs = [store.spec(n) for n in args.names] if args.names else None
    results = [r for r in store.verify(specs) if specs is not None or r.status != "missing"]
    if not results:
        print(f"no models installed in {store.root}")
        return 0
    bad = 0
    for r in results:
        if r.status == "ok":
            print(f"{r.name}: ok")
        elif r.status == "accepted":
            print(f"{r.name}: unknown SHA-256 {r.sha256}, accepted at import with --allow-unknown-hash")
        elif r.status == "missing":
            bad += 1
            print(f"{r.name}: missing ({r.path})")
        else:
            bad += 1
            print(f"{r.name}: CHECKSUM MISMATCH, SHA-256 {r.sha256}; `masquerade models download {r.name}` "
                  "replaces it")
    if bad:
        raise ModelError(f"{bad} of {len(results)} model file(s) failed verification")
    return 0


class _progress_bar:
    """A tqdm bar on stderr fed by the store's (done, total) callback."""

    def __init__(self, label: str, quiet: bool) -> None:
        self.label, self.quiet, self.bar = label, quiet, None

    def __enter__(self) -> Callable[[int, int | None], None] | None:
        return None if self.quiet else self._update

    def _update(self, done: int, total: int | None) -> None:
        from tqdm import tqdm

        # A new bar when the total becomes known or changes, or a retry restarted from zero.
        if self.bar is None or self.bar.total != total or done < self.bar.n:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total, initial=done, desc=self.label, unit="B", unit_scale=True,
                            unit_divisor=1024, file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

