"""`engage protocol check`: the bundled schedule in full; a broken file names every field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.support import run_cli
from trial.protocol import bundled_path

VISITS = ["SCR", *(f"W{week}" for week in range(0, 49, 4))]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENGAGE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")


def test_bundled_protocol_prints_the_48_week_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "protocol", "check", str(bundled_path()))
    assert outcome.status == 0, outcome.err
    out = outcome.out
    assert out.startswith("SIRIUS (NCT04582136, CSTAR_RCT_SLE_001): 48 weeks")
    assert "3 x 0.5 mg = 1.5 mg once daily" in out
    assert "blinded      weeks 0-24" in out
    assert "open_label   weeks 24-48" in out
    assert "follow-up after 60 min; cut-off after 720 min" in out
    assert "quiet hours: 22:00-07:00" in out
    table = out.split("visits:\n", 1)[1].splitlines()
    assert table[0].split()[:3] == ["visit", "week", "day"]
    assert [line.split()[0] for line in table[1:] if line.startswith("  ")] == VISITS
    rows = [line for line in table if line.startswith("  ")]
    w48 = rows[-1].split()
    # Holding the dose is off until the real protocol confirms it (issue 16).
    assert w48 == ["W48", "48", "336", "-7/+7", "yes", "yes", "-", "yes"]
    assert "hold dose (confirm with the protocol): off" in out
    w8 = next(line.split() for line in table if line.split()[0] == "W8")
    assert w8 == ["W8", "8", "56", "-7/+7", "-", "yes", "-", "yes"]  # no fasting at W8


def test_bundled_protocol_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "protocol", "check", str(bundled_path()), "--json")
    assert outcome.status == 0, outcome.err
    data = json.loads(outcome.out)
    assert data["study"]["id"] == "SIRIUS"
    assert data["dose"]["total_mg"] == 1.5
    assert [v["name"] for v in data["visits"]["table"]] == VISITS
    assert data["visits"]["table"][-1]["day"] == 336
    assert data["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
    assert [p["name"] for p in data["phases"]] == ["blinded", "open_label"]


def _broken(tmp_path: Path, *edits: tuple[str, str]) -> str:
    text = bundled_path().read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


MISSING_DOSE = ("[dose]\ncapsules = 3\nstrength_mg = 0.5\ntimes_per_day = 1\n",
                "[dose]\ncapsules = 3\ntimes_per_day = 1\n")
NEGATIVE_WINDOW = ("window_minus = 3", "window_minus = -3")
UNKNOWN_TIER = ("[escalation.ack_timeout_minutes]\n",
                "[escalation.ack_timeout_minutes]\nurgent = 5\n")
BAD_TIME = ('start = "22:00"', 'start = "25:00"')
EXPECTED = {
    MISSING_DOSE: "dose.strength_mg: Field required",
    NEGATIVE_WINDOW: "visits.table.2 (W4).window_minus: Input should be greater than or equal",
    UNKNOWN_TIER: "escalation.ack_timeout_minutes.urgent: unknown tier",
    BAD_TIME: "quiet_hours.start: not a time of day HH:MM: '25:00'",
}


@pytest.mark.parametrize("edit", list(EXPECTED), ids=["dose", "window", "tier", "time"])
def test_each_broken_field_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    edit: tuple[str, str]) -> None:
    outcome = run_cli(capsys, "protocol", "check", _broken(tmp_path, edit))
    assert outcome.status != 0
    assert outcome.out == ""
    header, *problems = outcome.err.splitlines()
    assert header == f"protocol error: {tmp_path / 'broken.toml'}"
    assert len(problems) == 1
    assert problems[0].startswith(f"  {EXPECTED[edit]}")


def test_every_problem_of_a_broken_file_is_named(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = _broken(tmp_path, *EXPECTED)
    outcome = run_cli(capsys, "protocol", "check", path)
    assert outcome.status != 0
    problems = outcome.err.splitlines()[1:]
    assert len(problems) == len(EXPECTED)
    for want in EXPECTED.values():
        assert any(p.strip().startswith(want) for p in problems), (want, problems)


def test_whole_missing_dose_table_is_named(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    text = bundled_path().read_text(encoding="utf-8")
    start, end = text.index("[dose]"), text.index("[[phases]]")
    path = tmp_path / "nodose.toml"
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    outcome = run_cli(capsys, "protocol", "check", str(path))
    assert outcome.status != 0
    assert "  dose: Field required" in outcome.err.splitlines()


@pytest.mark.parametrize(("content", "problem"), [
    ("[study\nid = 1", "not valid TOML"),
    (None, "cannot read"),
])
def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         content: str | None, problem: str) -> None:
    path = tmp_path / "p.toml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    outcome = run_cli(capsys, "protocol", "check", str(path))
    assert outcome.status != 0
    assert problem in outcome.err


def test_a_dose_label_that_is_a_forbidden_word_fails_the_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 18: every patient SMS is rendered with the protocol's own dose labels."""
    bad = tmp_path / "bad.toml"
    bad.write_text(bundled_path().read_text(encoding="utf-8").replace(
        '"study medication"', '"sirolimus"'), encoding="utf-8")
    outcome = run_cli(capsys, "protocol", "check", str(bad))
    assert outcome.status == 1
    assert "dose.reminder: contains forbidden word 'sirolimus'" in outcome.out


def _site_text(place: str) -> str:
    """A protocol file's site section (issue 16): its phone, visit time and place."""
    return ("\n[sites.S02]\nphone = \"010-69156114\"\n"
            "visit_time = \"8:00\"\n[sites.S02.sms_name]\nzh = \"协和随访\"\nen = \"PUMCH\"\n"
            f"[sites.S02.visit_place]\nzh = \"{place}\"\nen = \"Outpatient building\"\n")


def test_one_way_sites_and_whole_visit_notices_are_checked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16: a one-way site is shown with its phone and every patient SMS is rendered as
    its patients get it; a site without a phone, and a visit notice that the site's time and
    place push over one Chinese segment, fail the check."""
    bundled = bundled_path().read_text(encoding="utf-8")
    good = tmp_path / "good.toml"
    good.write_text(bundled.replace('# one_way_sites = ["S02"]', 'one_way_sites = ["S02"]')
                    + _site_text("门诊楼三层"), encoding="utf-8")
    outcome = run_cli(capsys, "protocol", "check", str(good))
    assert outcome.status == 0, outcome.out
    assert "one-way SMS (no replies; no choice line, the site's phone and 120 instead) at: " \
           "S02 (phone 010-69156114)" in outcome.out
    bad = tmp_path / "bad.toml"
    bad.write_text(bundled.replace('# one_way_sites = ["S02"]', 'one_way_sites = ["S03"]')
                   + _site_text("门诊楼三层东侧第二诊区抽血处旁边的候诊大厅"),
                   encoding="utf-8")
    outcome = run_cli(capsys, "protocol", "check", str(bad))
    assert outcome.status == 1
    assert "S03: no phone for its one-way SMS: set sites.S03.phone" in outcome.out
    assert "S02 W4 (zh): visit notice of 2 SMS segments, over 1" in outcome.out


def test_wechat_templates_are_checked_with_the_protocol(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20: the WeChat template file (ENGAGE_WECHAT_TEMPLATES, or --wechat-templates) is
    validated by `engage protocol check`: a good one passes; a field with an unknown source, a
    message id not in the catalogue, an empty template id and a reminder without a template of
    its own each give a problem line and a non-zero exit."""
    from fakes.wechat import TEMPLATES_TOML

    good = tmp_path / "wechat.toml"
    good.write_text(TEMPLATES_TOML, encoding="utf-8")
    monkeypatch.setenv("ENGAGE_WECHAT_TEMPLATES", str(good))
    outcome = run_cli(capsys, "protocol", "check", str(bundled_path()), "--json")
    assert outcome.status == 0, outcome.out
    assert json.loads(outcome.out)["wechat_problems"] == []

    bad = tmp_path / "bad.toml"
    bad.write_text(TEMPLATES_TOML.replace(
        'keyword2 = "=每日服药"', 'keyword2 = "subject"').replace(
        '[messages."dose.follow_up"]\ntemplate_id = "tmpl-dose"',
        '[messages."dose.forgotten"]\ntemplate_id = ""'), encoding="utf-8")
    outcome = run_cli(capsys, "protocol", "check", str(bundled_path()),
                      "--wechat-templates", str(bad))
    assert outcome.status == 1
    problems = outcome.out.split("WeChat template problems:\n", 1)[1].splitlines()
    assert "  wechat templates: dose.reminder.keyword2: unknown source 'subject' (one of " \
           "text, title, rest, choices or =text)" in problems
    assert "  wechat templates: dose.forgotten is not a catalogue message" in problems
    assert "  wechat templates: dose.forgotten has an empty template_id" in problems
    assert "  wechat templates: dose.follow_up is sent outside any conversation and needs a " \
           "template of its own" in problems

    unreadable = tmp_path / "unreadable.toml"
    unreadable.write_text("[default\n", encoding="utf-8")
    outcome = run_cli(capsys, "protocol", "check", str(bundled_path()),
                      "--wechat-templates", str(unreadable))
    assert outcome.status == 1
    assert f"  wechat templates: {unreadable}: " in outcome.out

    # The channel on without any template file: reminders could not go.
    monkeypatch.delenv("ENGAGE_WECHAT_TEMPLATES")
    for key, value in (("APP_ID", "wx0123456789abcdef"), ("APP_SECRET", "secret"),
                       ("TOKEN", "token")):
        monkeypatch.setenv(f"ENGAGE_WECHAT_{key}", value)
    outcome = run_cli(capsys, "protocol", "check", str(bundled_path()))
    assert outcome.status == 1
    assert "  wechat templates: ENGAGE_WECHAT_TEMPLATES is not set" in outcome.out
