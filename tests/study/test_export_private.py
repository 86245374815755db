"""A failed `engage export --out` leaves nothing behind that others could read (issue 15): rows
go to a private temporary file (0600) beside the target, renamed only when complete."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engage.clock import SimulatedClock
from engage.commands.export import write_export
from storage import audit
from storage.audit import Actor
from storage.db import Database
from tests.cli.support import run_cli


async def _audit_rows(db: Database, clock: SimulatedClock, count: int) -> None:
    async with db.write() as session:
        for n in range(count):
            audit.record(session, at=clock.now(), actor=Actor.cli("test"), action="note",
                         entity="sites", entity_id=str(n), new="患者 " * 20)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    """An empty folder for exports, and the audit export's place in it."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder, folder / "audit.csv"


async def test_a_failure_mid_export_leaves_no_partial_file_and_nothing_readable_by_others(
        sqlite_db: Database, clock: SimulatedClock, tmp_path: Path) -> None:
    await _audit_rows(sqlite_db, clock, 600)
    exports, out = _folder(tmp_path)
    seen: list[tuple[str, int]] = []

    def disk_full(rows: int) -> None:
        # Halfway: the only file is a private temporary one; the target does not exist yet.
        seen.extend((p.name, _mode(p)) for p in exports.iterdir())
        raise OSError(28, "No space left on device")

    async with sqlite_db.read() as session:
        with pytest.raises(OSError, match="No space left"):
            await write_export(session, "audit", out, disk_full)
    assert len(seen) == 1
    name, mode = seen[0]
    assert name.startswith(".audit.csv.")
    assert name.endswith(".partial")
    assert mode == 0o600  # never readable by group or others, whatever the umask
    assert list(exports.iterdir()) == []  # removed on failure


async def test_a_complete_export_replaces_the_target_and_stays_private(
        sqlite_db: Database, clock: SimulatedClock, tmp_path: Path) -> None:
    await _audit_rows(sqlite_db, clock, 3)
    exports, out = _folder(tmp_path)
    out.write_text("an older export\n")
    async with sqlite_db.read() as session:
        count = await write_export(session, "audit", out)
    assert count >= 3
    assert [p.name for p in exports.iterdir()] == ["audit.csv"]
    assert out.read_bytes().startswith(b"\xef\xbb\xbfid,at_utc")
    assert _mode(out) == 0o600


def test_the_cli_reports_a_failed_rename_and_leaves_no_temporary_file(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ENGAGE_DATABASE_URL", sqlite_url)
    exports, target = _folder(tmp_path)
    target.mkdir()  # a directory where the file should go: the rename fails at the end
    (target / "keep").write_text("")
    outcome = run_cli(capsys, "export", "audit", "--out", str(target))
    assert outcome.status != 0
    assert "cannot write" in outcome.err
    assert [p.name for p in exports.iterdir()] == ["audit.csv"]
    assert [p.name for p in target.iterdir()] == ["keep"]
