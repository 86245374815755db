"""The test suite: one folder per layer of the code (trial, messages, storage, study, scheduler,
bot and its channels), the command line (cli) and whole-system runs (e2e)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout
DATA = ROOT / "tests" / "data"
