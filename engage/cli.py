"""The `engage` command line. Errors go to stderr with a non-zero exit; `--json` where data."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence

from engage.commands import COMMAND_MODULES

# In the commands' own module (not here): under `python -m engage.cli` this file is __main__,
# and the commands must raise the very class `main` catches.
from engage.commands.support import CommandError
from engage.config import ConfigError, Settings, load_settings
from storage import audit
from trial.protocol import ProtocolError

Handler = Callable[[argparse.Namespace, Settings], Awaitable[int | None]]


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(prog="engage", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


async def _run(awaitable: Awaitable[int | None]) -> int | None:
    return await awaitable


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `engage` console script."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        settings = load_settings()
        # A change a command makes without a reason of its own is recorded as made by it.
        words = [w for w in (sys.argv[1:] if argv is None else list(argv))
                 if not w.startswith("-")][:2]
        with audit.cause(reason=f"engage {' '.join(words)}"):
            status = asyncio.run(_run(handler(args, settings)))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ProtocolError as exc:
        print(f"protocol error: {exc.source}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `engage triage check FILE | head`: the reader stopped reading; what it read is all
        # it wanted. Point stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
