"""`engage patient import`: every bad line is named, nothing written; a good file enrols all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.models import AuditEntry, LinkCode, Patient
from study.enrolment import hash_code
from tests.cli.support import counts, fetch, run_cli

HEADER = "subject_id,site,baseline,dose_time,language,phone,tz"


@pytest.fixture(autouse=True)
def _database(cli_site: None, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "patient", "enroll", "BJ01-900", "--site", "BJ01", "--baseline",
                      "2026-01-05", "--dose-time", "08:00", "--language", "zh", "--phone",
                      "+8613800000009")
    assert outcome.status == 0, outcome.err


def _csv(tmp_path: Path, *lines: str, bom: bool = False, newline: str = "\n") -> str:
    path = tmp_path / "roster.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + newline.join(lines).encode())
    return str(path)


BAD_ROWS = [
    # (row, the problem reported for its line)
    ("BJ01-001,BJ01,2026-03-02,08:00,zh,+8613812345601,", None),  # good
    ("BJ01-002,XX99,2026-03-02,08:00,zh,,", "site: no site XX99"),
    ("BJ01-003,BJ01,2026-03-02,08:00,zh,12345,", "phone: '12345' is not an international"),
    ("BJ01-001,BJ01,2026-03-02,08:00,en,,", "subject_id: BJ01-001 is also on line 2"),
    ("BJ01-900,BJ01,2026-03-02,08:00,zh,,", "subject_id: BJ01-900 is already enrolled"),
    ("BJ01-005,BJ01,2026-03-02,08:00,zh,,Mars/Olympus", "tz: 'Mars/Olympus' is not a known"),
    ("BJ01-006,BJ01,2026-02-30,08:00,zh,,", "baseline: '2026-02-30' is not a date"),
    ("BJ01-007,BJ01,2026-03-02,8pm,zh,,", "dose_time: '8pm' is not a time"),
    ("BJ01-011,BJ01,2026-03-02,23:15,zh,,", "dose_time: 23:15 falls in the protocol's quiet"),
    ("BJ01-008,BJ01,2026-03-02,08:00,fr,,", "language: 'fr' is not one of zh, en"),
    ("BJ01-009,BJ01,2026-03-02,08:00,zh,+86 138 0000 0009,", "phone: +8613800000009 belongs"),
    ("BJ01-010,BJ01,2026-03-02,08:00,zh,+8613812345601,", "phone: +8613812345601 is also on "
                                                          "line 2"),
    ("BJ01-011,BJ01,2026-03-02,08:00,zh", "row: expected 7 fields, got 5"),
    ("BJ01 012,BJ01,2026-03-02,08:00,zh,,", "subject_id: 'BJ01 012' is not a valid"),
]


def test_one_bad_row_of_each_kind_writes_nothing_and_names_every_line(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path, HEADER, *(row for row, _ in BAD_ROWS),
                "BJ01-013,BJ01,2026-13-01,08:00,zh,,Asia/Nowhere")
    before = counts(db_url)
    outcome = run_cli(capsys, "patient", "import", path, "--json")
    assert outcome.status != 0
    assert outcome.out == ""
    reported = outcome.err.splitlines()
    expected = [f"line {n}: {problem}" for n, (_, problem) in enumerate(BAD_ROWS, start=2)
                if problem]
    expected += [f"line {len(BAD_ROWS) + 2}: baseline: '2026-13-01'",
                 f"line {len(BAD_ROWS) + 2}: tz: 'Asia/Nowhere'"]
    assert len(reported) == len(expected) + 1  # and a summary line
    for line, want in zip(reported, expected, strict=False):
        assert line.startswith(want), (line, want)
    assert reported[-1].startswith("error: ")
    assert "nobody was enrolled" in reported[-1]
    assert counts(db_url) == before
    assert fetch(db_url, select(Patient.subject_id)) == [("BJ01-900",)]


@pytest.mark.parametrize(("lines", "problem"), [
    ([], "line 1: file: the file is empty"),
    ([HEADER], "line 2: file: no patients after the header"),
    (["subject,site,baseline,dose_time,language,phone,tz",
      "BJ01-001,BJ01,2026-03-02,08:00,zh,,"], "line 1: header: expected " + HEADER),
    ([HEADER.replace(",tz", ""), "BJ01-001,BJ01,2026-03-02,08:00,zh,"], "line 1: header:"),
])
def test_empty_file_or_wrong_header_writes_nothing(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str],
        problem: str) -> None:
    before = counts(db_url)
    outcome = run_cli(capsys, "patient", "import", _csv(tmp_path, *lines))
    assert outcome.status != 0
    assert outcome.err.splitlines()[0].startswith(problem)
    assert counts(db_url) == before


def test_unreadable_file_is_one_clear_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = run_cli(capsys, "patient", "import", str(tmp_path / "nope.csv"))
    assert missing.status != 0
    assert "cannot read" in missing.err
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(f"{HEADER}\nBJ01-001,BJ01,2026-03-02,08:00,中文,,\n".encode("gbk"))
    outcome = run_cli(capsys, "patient", "import", str(gbk))
    assert outcome.status != 0
    assert "not UTF-8" in outcome.err


def test_good_file_enrols_everyone_with_a_link_code(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # As Excel writes it: a BOM, CRLF line ends, a trailing blank line, spaces in a phone number.
    path = _csv(tmp_path, HEADER, "BJ01-001,BJ01,2026-03-02,8:00,zh,+86 138 1234 5601,",
                "BJ01-002,BJ01,2026-03-09,20:30,EN,,Europe/London",
                "BJ01-003,BJ01,2026-03-09,07:15,zh,+8613812345603,Asia/Shanghai", "",
                bom=True, newline="\r\n")
    _, audit_before = counts(db_url)
    outcome = run_cli(capsys, "patient", "import", path, "--json")
    assert outcome.status == 0, outcome.err
    enrolled = json.loads(outcome.out)
    assert [e["subject_id"] for e in enrolled] == ["BJ01-001", "BJ01-002", "BJ01-003"]
    patients = {p.subject_id: p for (p,) in fetch(db_url, select(Patient))}
    assert len(patients) == 4
    assert (patients["BJ01-001"].phone, patients["BJ01-001"].tz,
            patients["BJ01-001"].dose_time) == ("+8613812345601", "Asia/Shanghai", "08:00")
    assert (patients["BJ01-002"].phone, patients["BJ01-002"].tz,
            patients["BJ01-002"].language) == (None, "Europe/London", "en")
    hashes = {h for (h,) in fetch(db_url, select(LinkCode.code_hash))}
    assert {hash_code(e["link_code"]) for e in enrolled} <= hashes
    created = fetch(db_url, select(AuditEntry.entity_id).where(
        AuditEntry.action == "create", AuditEntry.entity == "patients",
        AuditEntry.id > audit_before))
    assert sorted(c for (c,) in created) == ["BJ01-001", "BJ01-002", "BJ01-003"]


def test_text_output_lists_each_subject_and_code(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path, HEADER, "BJ01-001,BJ01,2026-03-02,08:00,zh,,")
    outcome = run_cli(capsys, "patient", "import", path)
    assert outcome.status == 0, outcome.err
    first = outcome.out.splitlines()[0]
    assert first.startswith("BJ01-001\tBJ01\tlink code ")
    code = first.rsplit(" ", 1)[1]
    assert fetch(db_url, select(LinkCode.id).where(LinkCode.code_hash == hash_code(code)))
    assert "enrolled 1 patient(s)" in outcome.out

