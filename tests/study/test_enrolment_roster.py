"""Enrolment checks and roster parsing without a database: every problem at once."""

from __future__ import annotations

from datetime import date

import pytest

from study.importing import COLUMNS, parse_roster
from trial.enrolment import EnrolmentError, check_enrolment, validate_enrolment

HEADER = ",".join(COLUMNS)


def test_check_enrolment_reports_every_bad_field() -> None:
    enrolment, problems = check_enrolment(subject="a b", site="BJ 01", baseline_date="2026/03/02",
                                          dose_at="7", lang="de", phone_number="0101",
                                          tz="Asia/Atlantis")
    assert enrolment is None
    assert [p.field for p in problems] == ["subject_id", "site", "baseline", "dose_time",
                                           "language", "phone", "tz"]
    assert all(isinstance(p, EnrolmentError) and p.reason for p in problems)


def test_check_enrolment_normalises_good_values() -> None:
    enrolment, problems = check_enrolment(subject=" S-1 ", site="BJ01", baseline_date="2026-03-02",
                                          dose_at="7:05", lang="zh-CN",
                                          phone_number="+44 7911 123456", tz=" ")
    assert problems == []
    assert enrolment is not None
    assert (enrolment.subject_id, enrolment.baseline, enrolment.dose_time, enrolment.language,
            enrolment.phone, enrolment.tz) == ("S-1", date(2026, 3, 2), "07:05", "zh",
                                               "+447911123456", None)


def test_validate_enrolment_raises_the_first_problem() -> None:
    with pytest.raises(EnrolmentError, match=r"^baseline: "):
        validate_enrolment(subject="S-1", site="BJ01", baseline_date="x", dose_at="25:00",
                           lang="zh")


def test_roster_with_bom_crlf_and_blank_lines() -> None:
    rows, problems = parse_roster(f"\ufeff{HEADER}\r\n\r\nS-1,BJ01,2026-03-02,08:00,zh,,\r\n"
                                  ",,,,,,\r\nS-2,BJ01,2026-03-02,08:00,en,,UTC\r\n")
    assert problems == []
    assert [(r.line, r.enrolment.subject_id) for r in rows] == [(3, "S-1"), (5, "S-2")]


def test_roster_quoted_fields_and_header_case() -> None:
    header = HEADER.upper().replace(",", " , ")
    rows, problems = parse_roster(
        header + '\n"S-1","BJ01","2026-03-02","08:00","zh","+86 138 1234 5678",""')
    assert problems == []
    assert rows[0].enrolment.phone == "+8613812345678"


def test_roster_duplicates_are_found_on_lines_with_other_problems() -> None:
    _, problems = parse_roster(f"{HEADER}\nS-1,BJ01,2026-03-02,08:00,zh,+8613812345678,\n"
                               "S-1,BJ01,bad,08:00,zh,+86 138 1234 5678,\n")
    assert [str(p) for p in problems] == [
        "line 3: baseline: 'bad' is not a date YYYY-MM-DD",
        "line 3: subject_id: S-1 is also on line 2",
        "line 3: phone: +8613812345678 is also on line 2",
    ]
