"""What the admin CLI tests share: `engage` run in-process on the test database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.support import setup_site


@pytest.fixture
def cli_database(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`engage` on the test database (both backends), run from an empty folder (no stray
    .env)."""
    monkeypatch.setenv("ENGAGE_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli_site(cli_database: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The same, with site BJ01 (Beijing time) added through the CLI."""
    setup_site(capsys)
