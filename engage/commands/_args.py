"""The shapes every command group registers with: `engage GROUP COMMAND`, a handler, `--json`,
and the audited change's `--reason`."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from engage.config import Settings

Handler = Callable[[argparse.Namespace, Settings], Awaitable[int | None]]

REASON_HELP = "why (kept in the audit trail)"


def command_group(sub: argparse._SubParsersAction, name: str,
                  help: str) -> argparse._SubParsersAction:
    """`engage NAME COMMAND ...`: a group whose command must be given."""
    group = sub.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True)


def command(group: argparse._SubParsersAction, name: str, handler: Handler, *, help: str,
            positionals: tuple[str, ...] = (), reason: bool = False, json: bool = True,
            **parser_options: Any) -> argparse.ArgumentParser:
    """One command of a group, run by `handler`. `positionals`: METAVARs of plain positional
    arguments (`SUBJECT` is read as `args.subject`); `reason`: the audited change's required
    `--reason`; `json`: the usual `--json`."""
    parser = group.add_parser(name, help=help, **parser_options)
    for metavar in positionals:
        parser.add_argument(metavar.lower(), metavar=metavar)
    if reason:
        parser.add_argument("--reason", required=True, help=REASON_HELP)
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=handler)
    return parser
