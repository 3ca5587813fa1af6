"""The only place that prints for users and decides exit codes."""

from __future__ import annotations

import os
import sys

from masquerade.cli.parser import build_parser
from masquerade.cli.signals import interrupted_text, signal_of, terminating_signals_interrupt
from masquerade.errors import Cancelled, MasqueradeError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with terminating_signals_interrupt():
            return int(args.func(args))
    except Cancelled as cancelled:
        print(f"masquerade: {cancelled}", file=sys.stderr)
        return 128 + cancelled.signum if cancelled.signum else cancelled.exit_code
    except MasqueradeError as error:
        print(f"masquerade: error: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): not an error of ours. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as interrupt:
        signum = signal_of(interrupt)
        print(f"masquerade: {interrupted_text(signum)}", file=sys.stderr)
        return 128 + signum if signum else Cancelled.exit_code


if __name__ == "__main__":
    sys.exit(main())
