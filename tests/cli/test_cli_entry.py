"""The command line as an operator starts it: user errors are one line on stderr and exit 2,
through `python -m engage.cli` as through the `engage` script, for every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ROOT as PROJECT_ROOT
from tests.cli.support import run_cli

ROOT = PROJECT_ROOT


def _environment() -> dict[str, str]:
    """This environment without any ENGAGE_ setting, with the project importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _module(tmp_path: Path, *argv: str, url: str) -> subprocess.CompletedProcess[str]:
    env = _environment()
    env["ENGAGE_DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-m", "engage.cli", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_python_m_gives_a_user_error_one_line(tmp_path: Path) -> None:
    result = _module(tmp_path, "site", "add", "BJ01", "--name", " ", "--tz", "UTC",
                     url=f"sqlite+aiosqlite:///{tmp_path / 'engage.db'}")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: name: a site needs a name"
    assert "Traceback" not in result.stderr


def test_output_read_only_in_part_is_no_error(tmp_path: Path) -> None:
    """`engage triage check FILE | head -1`: the reader has closed the pipe (here before the
    first write, so the write fails every time); no traceback, exit 0."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = _environment()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "engage.cli", "triage", "check",
             str(ROOT / "tests" / "data" / "triage" / "corpus.tsv")],
            cwd=tmp_path, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True,
            timeout=120)
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 0


def test_db_upgrade_names_an_unreachable_database(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGAGE_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:1/none")
    outcome = run_cli(capsys, "db", "upgrade")
    assert outcome.status == 2
    assert outcome.err.startswith("error: cannot open the database:")
    assert "Traceback" not in outcome.err


def test_the_command_tree_does_not_load_the_chat_channels(tmp_path: Path) -> None:
    """Every command registers through the same tree, so a module that imports the channels at
    the top (aiogram alone is about 4 s of imports) makes `engage site list` that slow too; the
    commands that need them import them when they run."""
    env = _environment()
    probe = ("import sys; from engage.cli import build_parser; build_parser(); "
             "print(sorted(m for m in ('aiogram', 'engage.runtime', 'bot.channels.telegram') "
             "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
