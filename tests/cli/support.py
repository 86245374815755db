"""Helpers for the admin CLI tests: run `engage` in-process and read the database afterwards."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Select, func, select

from engage.cli import main
from storage.db import Database
from storage.models import AuditEntry, Patient


@dataclass(frozen=True)
class Outcome:
    status: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Outcome:
    """Run one `engage` command in-process and capture what it printed."""
    capsys.readouterr()
    status = main(list(argv))
    captured = capsys.readouterr()
    return Outcome(status, captured.out, captured.err)


def fetch(url: str, statement: Select[Any]) -> list[Any]:
    """The rows of one query on the database at `url`."""

    async def go() -> list[Any]:
        database = Database(url)
        try:
            async with database.read() as session:
                return list((await session.execute(statement)).all())
        finally:
            await database.dispose()

    return asyncio.run(go())


def counts(url: str) -> tuple[int, int]:
    """How many patients and audit rows there are."""
    patients = fetch(url, select(func.count()).select_from(Patient))[0][0]
    entries = fetch(url, select(func.count()).select_from(AuditEntry))[0][0]
    return patients, entries


def setup_site(capsys: pytest.CaptureFixture[str], site: str = "BJ01") -> None:
    """A site in Beijing time."""
    outcome = run_cli(capsys, "site", "add", site, "--name", "北京协和医院", "--tz",
                      "Asia/Shanghai")
    assert outcome.status == 0, outcome.err
