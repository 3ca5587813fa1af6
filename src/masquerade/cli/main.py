"""The only place that prints for users and decides exit codes."""

from __future__ import annotations

import os
import sys

from masquerade.cli.parser import build_parser
from masquerade.errors import MasqueradeError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except MasqueradeError as error:
        print(f"masquerade: error: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): not an error of ours. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("masquerade: cancelled; no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
