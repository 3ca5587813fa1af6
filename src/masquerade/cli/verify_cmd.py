"""``masquerade verify FILE... [--json]``: report each file's watermark and content credentials.

Exit status: 0 when every file is labelled, 1 when at least one is not, 2 when a file could not be
read (missing, not an image or video...).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from masquerade.config import RunConfig
from masquerade.errors import MasqueradeError

EXIT_ALL_LABELLED = 0
EXIT_UNLABELLED = 1
EXIT_ERROR = 2


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``verify`` command."""
    from masquerade.cli.parser import limits_parser

    parser = subparsers.add_parser(
        "verify",
        help="check whether files carry masquerade's watermark and content credentials",
        description="For each file, report the invisible watermark (found or not, payload, frames voted) "
        "and the C2PA manifest (present, valid, what it claims). A file counts as labelled when either "
        "says it is masquerade's AI face swap. Exit status: 0 all labelled, 1 one or more not labelled, "
        "2 a file could not be read.",
        parents=[limits_parser()],
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="images or videos to check")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from masquerade.cli.parser import limits_from_args
    from masquerade.config import validate
    from masquerade.verify import verify_file

    limits = limits_from_args(args)
    validate(RunConfig(limits=limits))
    entries: list[dict] = []
    status = EXIT_ALL_LABELLED
    for path in args.files:
        try:
            result = verify_file(path, limits=limits)
        except MasqueradeError as error:
            entries.append({"path": str(path), "error": str(error)})
            status = EXIT_ERROR
            if not args.json:
                message = str(error) if str(path) in str(error) else f"{path}: {error}"
                print(f"ERROR: {message}", file=sys.stderr)
            continue
        entry = result.to_dict()
        entries.append(entry)
        if not result.labelled and status == EXIT_ALL_LABELLED:
            status = EXIT_UNLABELLED
        if not args.json:
            print(describe(entry))
    if args.json:
        document = {"all_labelled": status == EXIT_ALL_LABELLED, "exit_code": status, "files": entries}
        print(json.dumps(document, indent=2))
    return status


def describe(entry: dict) -> str:
    """One human line for a file's ``VerifyResult.to_dict()``."""
    verdict = "LABELLED" if entry["labelled"] else "NOT LABELLED"
    return f"{entry['path']}: {verdict}: {_watermark_text(entry)}; {_credentials_text(entry)}"


def _watermark_text(entry: dict) -> str:
    mark = entry["watermark"]
    frames = ""
    if entry["media"] == "video":
        frames = f", {mark['frames_marked']}/{mark['frames_read']} frames"
    if mark["found"]:
        return f"watermark found (payload {mark['payload']}, key {mark['key_id']}{frames})"
    return f"no watermark (confidence {mark['confidence']:.2f}{frames})"


def _credentials_text(entry: dict) -> str:
    c2pa = entry["c2pa"]
    if c2pa["present"]:
        claims = c2pa["claims"]
        if c2pa["valid"]:
            trust = "trusted signer" if c2pa["trusted"] else "signer not on a trust list"
            state = f"C2PA manifest valid ({trust}: {claims.get('signer')}, issued by {claims.get('issuer')})"
        else:
            failures = ", ".join(c2pa["failures"]) or c2pa["validation_state"] or "unknown"
            state = f"C2PA manifest INVALID ({failures})"
        source = (claims.get("digital_source_type") or "").rsplit("/", 1)[-1] or "no digital source type"
        if claims.get("faces_replaced") == 0:
            source = "no face replaced (watermark only)"
        actions = ", ".join(a for a in claims.get("actions", []) if a) or "no actions"
        return f"{state}: {actions} by {claims.get('software_agent') or 'unknown software'}, {source}"
    if entry["plain_tag"]["present"]:
        claims = entry["plain_tag"]["claims"]
        return f"no C2PA manifest; plain metadata tag (unsigned): {claims.get('description')}"
    if c2pa["error"]:
        return f"no usable C2PA manifest ({c2pa['error']})"
    return "no C2PA manifest"
