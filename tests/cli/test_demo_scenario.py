"""The demo's cast: a smaller demo still shows every behaviour, language and channel (one
patient on WeChat, one coordinator on WeCom)."""

from __future__ import annotations

from datetime import date

import pytest

from engage.cli import main
from engage.demo.scenario import MAX_PATIENTS, Behaviour, build


def test_the_first_eight_patients_cover_every_behaviour_language_and_channel() -> None:
    scenario = build(date(2025, 3, 10), days=5, patients=8)
    assert {p.behaviour for p in scenario.patients} == set(Behaviour)
    assert {(p.language, p.channel) for p in scenario.patients} == {
        ("zh", "telegram"), ("zh", "sms"), ("en", "telegram"), ("en", "sms"), ("zh", "wechat")}
    assert [p.key for p in scenario.patients if p.channel == "wechat"] == ["SH-001"]
    assert {p.site for p in scenario.patients} == {"SH", "XJ"}
    # Every special behaviour happens inside even a short run.
    assert all(1 <= day <= 4 for day in scenario.event_day.values())


def test_each_site_has_the_whole_escalation_chain_on_a_chat_app() -> None:
    scenario = build(date(2025, 3, 10))
    for site in ("SH", "XJ"):
        roles = {s.role for s in scenario.staff
                 if s.site == site and s.channel in ("telegram", "wecom")}
        assert roles == {"coordinator", "investigator", "pi"}
    assert [(s.key, s.channel) for s in scenario.staff if s.channel != "telegram"] == [
        ("SH-coordinator", "wecom")]
    assert len(scenario.patients) == MAX_PATIENTS == 20
    addresses = [p.address for p in scenario.people]
    assert len(set(addresses)) == len(addresses)


def test_a_demo_larger_than_its_cast_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--patients", str(MAX_PATIENTS + 1)]) == 2
    assert "at most 20 patients" in capsys.readouterr().err
