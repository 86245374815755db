"""`engage demo` (two simulated weeks, no credentials) and `engage chat` (type as a patient or a
staff member through the sandbox channel)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console

from engage.clock import SystemClock
from engage.commands.support import CommandError
from engage.config import Settings
from engage.demo.driver import DemoOptions, run_demo
from engage.demo.scenario import MAX_PATIENTS, SITES
from engage.demo.world import DemoError
from trial.protocol import load_protocol

DEFAULT_DB = Path("engage-demo.db")
CHAT_DB = Path("engage-chat.db")  # not the demo's file, which is kept for inspection
# On a terminal a simulated day lasts at least this long, so the transcript can be followed.
WATCHABLE_DAY_SECONDS = 1.0


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="the whole product on simulated patients, no credentials",
                          description="Runs the bundled SIRIUS protocol on a fresh SQLite file "
                          "with two sites, their staff and simulated patients, through the real "
                          "scheduler, dispatcher and conversation core on a simulated clock.")
    _common(demo)
    demo.add_argument("--days", type=_positive, default=14, help="simulated days (default 14)")
    demo.add_argument("--fast", action="store_true",
                      help="do not slow down for reading on a terminal")
    demo.add_argument("--all", dest="show_all", action="store_true",
                      help="show every patient's messages, not only the featured ones")
    demo.add_argument("--interactive", action="store_true",
                      help="type as a patient or a staff member instead (same as engage chat)")
    demo.set_defaults(handler=_demo)

    chat = sub.add_parser("chat", help="type as a patient or a staff member (sandbox channel)",
                          description="A terminal chat with the demo study: choose a patient "
                          "(by subject id) or a staff member, type text, press buttons by "
                          "number. Exits on /quit or end of input.")
    _common(chat)
    chat.set_defaults(handler=_chat)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=None,
                        help=f"the SQLite file, replaced on each run (default {DEFAULT_DB}; "
                             f"{CHAT_DB} for the chat)")
    parser.add_argument("--patients", type=_positive, default=MAX_PATIENTS,
                        help=f"number of simulated patients (1-{MAX_PATIENTS}, default "
                             f"{MAX_PATIENTS})")
    parser.add_argument("--seed", type=int, default=7, help=argparse.SUPPRESS)
    # Tests pin the calendar (weekdays decide check-ins); people never need to.
    parser.add_argument("--first-day", type=date.fromisoformat, default=None,
                        help=argparse.SUPPRESS)


def _console() -> Console:
    # Piped into a file, rich would wrap at 80 columns: the transcript reads better wider.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _check(args: argparse.Namespace) -> None:
    if args.patients > MAX_PATIENTS:
        raise CommandError(f"--patients: the demo has at most {MAX_PATIENTS} patients")


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.interactive:
        return await _chat(args, settings)
    _check(args)
    console = _console()
    started = time.monotonic()
    pace = 0.0 if args.fast or not console.is_terminal else WATCHABLE_DAY_SECONDS
    options = DemoOptions(path=args.db or DEFAULT_DB, days=args.days, patients=args.patients,
                          pace=pace, show_all=args.show_all, seed=args.seed,
                          first_day=args.first_day)
    try:
        result = await run_demo(options, load_protocol(), console, SystemClock().now())
    except DemoError as exc:
        raise CommandError(f"the demo stopped: {exc}", status=1) from None
    console.rule("[bold]Done")
    console.print(f"finished in {time.monotonic() - started:.1f} s; the database is kept for "
                  f"inspection: {result.path}", soft_wrap=True)
    if result.chart is not None:
        console.print(f"digest chart (PNG): {result.chart}", soft_wrap=True)
    console.print("next:", soft_wrap=True)
    console.print(f"  ENGAGE_DATABASE_URL={result.url} engage report adherence "
                  f"--at {result.end.astimezone(UTC).isoformat()}", soft_wrap=True)
    console.print(f"  ENGAGE_DATABASE_URL={result.url} engage run   (carries this study on "
                  "in real time; its people have made-up addresses, so a real study starts "
                  "from a fresh database with a bot token and Twilio settings)", soft_wrap=True)
    console.print("  engage chat   (type as a patient or a staff member)", soft_wrap=True)
    if result.errors:
        for error in result.errors:
            print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


async def _chat(args: argparse.Namespace, settings: Settings) -> int:
    _check(args)
    from engage.demo.chat import run_chat

    console = _console()
    today = args.first_day or SystemClock().now().astimezone(ZoneInfo(SITES[0].tz)).date()
    try:
        return await run_chat(args.db or CHAT_DB, load_protocol(), console, sys.stdin, today,
                              patients=args.patients)
    except DemoError as exc:
        raise CommandError(f"the chat stopped: {exc}", status=1) from None
