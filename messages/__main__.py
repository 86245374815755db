"""`python -m messages`: every catalogue problem (`messages.check`), then, when there is none,
every SMS problem with the bundled protocol (`messages.sms.check_sms`: segment budgets, forbidden
words, Latin keywords in Chinese); exit status 1 if there is any.

Here rather than in `messages.check`: the SMS check builds on the catalogue check, so the module
that runs both sits above the two (no import cycle between them)."""

from __future__ import annotations

import sys

from messages.check import check_catalogues
from messages.sms import check_sms
from trial.protocol import load_protocol


def main() -> int:
    """Print the problems; 1 if there is any, else 0."""
    problems = check_catalogues()
    if not problems:
        problems = check_sms(load_protocol())
    for problem in problems:
        sys.stdout.write(f"{problem}\n")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
