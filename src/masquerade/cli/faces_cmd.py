"""``masquerade faces TARGET [-o DIR] [--json]``: the distinct people of an image or video."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from masquerade.errors import UsageError


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "faces", help="find the distinct people in an image or video (ids to use with --map)",
        description="Tracks every face, embeds each track's best frames and groups the tracks into people "
                    "(no fixed number). Prints one line per person, p1 first (most screen time). With -o, "
                    "writes contact_sheet.png and one crop per person (p1.jpg, ...) that works as "
                    "--reference or as the REFERENCE of --map.",
        parents=parents,
    )
    p.add_argument("target", type=Path, metavar="TARGET", help="image or video")
    p.add_argument("-o", "--output", type=Path, metavar="DIR",
                   help="folder for contact_sheet.png and p1.jpg, p2.jpg, ... (created if missing)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from masquerade.api import find_people
    from masquerade.cli.parser import config_from_args
    from masquerade.cli.swap_cmd import ProgressHooks
    from masquerade.people import describe

    if args.output is not None and args.output.exists() and not args.output.is_dir():
        raise UsageError(f"-o {args.output} is a file; faces writes a folder of pictures")
    hooks = ProgressHooks(args.quiet, "finding people")
    try:
        people = find_people(args.target, config_from_args(args), hooks)
    finally:
        hooks.close()
    written = people.write(args.output) if args.output is not None else {}
    if args.json:
        print(json.dumps(people.to_dict(written), indent=2))
        return 0
    for person in people.persons:
        print(describe(person, people.kind))
    count = len(people.persons)
    line = f"{args.target}: {count} {'person' if count == 1 else 'people'}"
    if args.output is not None:
        line += f"; contact sheet and crops in {args.output}"
    print(line)
    return 0
