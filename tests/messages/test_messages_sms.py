"""SMS wording: segment counting, the site signature, and the budget and forbidden-word check."""

from __future__ import annotations

from pathlib import Path

import pytest

from messages.sms import (
    check_sms,
    forbidden_words_in,
    is_staff_facing,
    measure,
    render,
    segments,
    sign,
    signature_for,
    sms_templates,
)
from study.dose_answers import dose_choices
from tests.messages.test_messages_catalogue import write_po
from trial.protocol import Localized, Protocol, SiteText


def with_sites(protocol: Protocol, **names: tuple[str, str]) -> Protocol:
    """The protocol with `sites.<code>.sms_name` set for some sites."""
    sites = {code: SiteText(sms_name=Localized(zh=zh, en=en)) for code, (zh, en) in names.items()}
    return protocol.model_copy(update={"sites": sites})


@pytest.mark.parametrize(("text", "encoding", "units", "count"), [
    ("", "GSM-7", 0, 1),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
    ("€" * 81, "GSM-7", 162, 2),
    ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # an escape pair is never split
    ("Reply 1 TAKEN, 2 SKIP @ £5 ÄÖÜ", "GSM-7", 30, 1),
    ("It’s time", "UCS-2", 9, 1),  # a curly apostrophe makes the whole text UCS-2
    ("药" * 70, "UCS-2", 70, 1),
    ("药" * 71, "UCS-2", 71, 2),
    ("药" * 134, "UCS-2", 134, 2),
    ("药" * 135, "UCS-2", 135, 3),
    ("😀" * 35, "UCS-2", 70, 1),  # outside the BMP: two code units each
    ("a" * 66 + "😀" + "a" * 66, "UCS-2", 134, 3),  # a surrogate pair is never split
])
def test_segments(text: str, encoding: str, units: int, count: int) -> None:
    length = measure(text)
    assert (length.encoding, length.units, length.segments) == (encoding, units, count)
    assert segments(text) == count


def test_sign_chinese_uses_brackets_and_english_a_last_line() -> None:
    assert sign("请按时服药。", "协和医院随访中心") == "请按时服药。【协和医院随访中心】"
    assert sign("Time for your dose.", "PUMCH Clinic") == "Time for your dose.\nPUMCH Clinic"
    assert sign("请按时服药。", " 【协和医院】 ") == "请按时服药。【协和医院】"
    assert sign("Time for your dose.", "  ") == "Time for your dose."


def test_signature_prefers_the_protocol_sms_name(protocol: Protocol) -> None:
    configured = with_sites(protocol, S01=("协和随访", "PUMCH Follow-up"))
    assert signature_for(configured, "S01", "北京协和医院", "zh") == "协和随访"
    assert signature_for(configured, "S01", "北京协和医院", "en") == "PUMCH Follow-up"
    assert signature_for(configured, "S02", "华西医院", "zh") == "华西医院"


def test_the_signature_ends_the_whole_sms_or_starts_it_where_the_site_says(
        protocol: Protocol) -> None:
    """Issue 16: after the choice line by default (as Chinese carriers require), at the start
    in 【】 where the site configures it so; the text the real SMS channel sends."""
    sites = {"S01": SiteText(sms_name=Localized(zh="协和随访", en="PUMCH")),
             "S02": SiteText(sms_name=Localized(zh="华西随访", en="West China"),
                             sms_name_at="start")}
    configured = protocol.model_copy(update={"sites": sites})
    choices = tuple(dose_choices(7, "zh"))
    end = render("该服药了。", choices, "zh", signature_for(configured, "S01", "", "zh"))
    assert end == "该服药了。\n回复：1 已服，2 未服，3 稍后提醒【协和随访】"
    start = render("该服药了。", choices, "zh", signature_for(configured, "S02", "", "zh"))
    assert start == "【华西随访】该服药了。\n回复：1 已服，2 未服，3 稍后提醒"
    english = render("Time.", (), "en", signature_for(configured, "S02", "", "en"))
    assert english == "West China: Time."
    assert check_sms(configured) == []


def test_a_site_name_with_a_forbidden_word_is_not_used(protocol: Protocol,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    assert signature_for(protocol, "S04", "仁济医院风湿科", "zh") == ""
    assert "sites.S04.sms_name" in caplog.text


@pytest.mark.parametrize(("text", "found"), [
    ("Please take your study medication.", []),
    ("Sleep well", []),  # "SLE" is a whole word only
    ("Your SLE clinic", ["SLE"]),
    ("your ＳＬＥ clinic", ["SLE"]),  # full-width forms fold
    ("the Trials team", ["trial"]),
    ("placebo-controlled", ["placebo"]),
    ("请按时服用西罗莫司", ["西罗莫司"]),
    ("您的狼疮门诊", ["狼疮"]),
])
def test_forbidden_words(protocol: Protocol, text: str, found: list[str]) -> None:
    assert forbidden_words_in(text, protocol.sms.forbidden_words) == found


def test_every_sms_template_fits_its_budget_and_names_nothing_forbidden(
        protocol: Protocol) -> None:
    """Acceptance 2: every template, both languages, realistic values, signed by the site."""
    problems = check_sms(protocol)
    assert problems == [], "\n".join(str(p) for p in problems)


def test_the_check_covers_every_domain_and_both_languages() -> None:
    templates, problems = sms_templates()
    assert problems == []
    by_language = {t.language for t in templates}
    assert by_language == {"zh", "en"}
    assert {t.message_id for t in templates} >= {"common.unknown_sender", "common.not_understood"}


def test_the_check_finds_long_and_forbidden_texts(tmp_path: Path, protocol: Protocol) -> None:
    write_po(tmp_path, "en", "newfeature", {
        "newfeature.long": "Time for your medication. " * 6,
        "newfeature.named": "Time for your sirolimus.",
        "newfeature.fine": "Time for your {dose_label} at {time}.",
    })
    write_po(tmp_path, "zh_CN", "newfeature", {
        "newfeature.long": "该服药了，请按时服用您的药物。" * 5,
        "newfeature.named": "请服用安慰剂。",
        "newfeature.fine": "请在{time}服用{dose_label}。",
    })
    found = {(p.where.split("/")[0], p.message_id, p.what.split(" ")[0])
             for p in check_sms(protocol, tmp_path)}
    assert found == {
        ("en", "newfeature.long", "over"), ("zh_CN", "newfeature.long", "over"),
        ("en", "newfeature.named", "contains"), ("zh_CN", "newfeature.named", "contains"),
    }


def test_the_signature_counts_against_the_budget(tmp_path: Path, protocol: Protocol) -> None:
    write_po(tmp_path, "en", "dose", {"dose.a": "a"})
    write_po(tmp_path, "zh_CN", "dose", {"dose.a": "请" * 60})  # 60 + 【8 characters】 = 70
    assert check_sms(protocol, tmp_path) == []
    long_name = with_sites(protocol, S01=("北京协和医院风湿免疫随访", "PUMCH"))
    problems = check_sms(long_name, tmp_path)
    assert [p.message_id for p in problems if p.message_id] == ["dose.a"]
    assert any("signature has '风湿'" in p.what for p in problems)


def test_budget_comments_and_staff_messages(tmp_path: Path, protocol: Protocol) -> None:
    long_zh = "请" * 100
    comments = '\n#. segments: 2\nmsgid "dose.long_ok"\nmsgstr "{}"\n'
    write_po(tmp_path, "en", "dose", {"dose.staff_note": "x", "dose.long_ok": "x",
                                      "dose.note": "x", "dose.other": "x"})
    write_po(tmp_path, "zh_CN", "dose", {"dose.staff_note": long_zh, "dose.note": long_zh},
             extra=comments.format(long_zh) + '\n#. audience: staff\n'
             f'msgid "dose.other"\nmsgstr "{long_zh}"\n')
    write_po(tmp_path, "en", "alert", {"alert.page": "Your lupus patient"})
    write_po(tmp_path, "zh_CN", "alert", {"alert.page": long_zh})
    found = {(p.message_id, p.what.split(" ")[0]) for p in check_sms(protocol, tmp_path)}
    # staff_ and alert are exempt from the budget, not from the forbidden words
    assert found == {("dose.note", "over"), ("alert.page", "contains")}
    assert is_staff_facing("digest.header")
    assert is_staff_facing("chat.staff_help")
    assert not is_staff_facing("chat.help")


def test_a_placeholder_without_a_sample_value_is_reported(tmp_path: Path,
                                                          protocol: Protocol) -> None:
    write_po(tmp_path, "en", "dose", {"dose.a": "Hello {favourite_colour}"})
    write_po(tmp_path, "zh_CN", "dose", {"dose.a": "您好{favourite_colour}"})
    write_po(tmp_path, "en", "staff", {"staff.a": "Row {c7} {r28}", "staff.b": "{x} lupus"})
    write_po(tmp_path, "zh_CN", "staff", {"staff.a": "行 {c7} {r28}", "staff.b": "{x}"})
    found = {(p.where, p.message_id, p.what.split(" ")[0]) for p in check_sms(protocol, tmp_path)}
    # staff messages have no length budget: no sample needed, the wording is still checked
    assert found == {("en/LC_MESSAGES/dose.po", "dose.a", "no"),
                     ("zh_CN/LC_MESSAGES/dose.po", "dose.a", "no"),
                     ("en/LC_MESSAGES/staff.po", "staff.b", "contains")}


def test_an_unreadable_budget_comment_is_reported(tmp_path: Path, protocol: Protocol) -> None:
    write_po(tmp_path, "en", "dose", {"dose.a": "x"},
             extra='\n#. segments: lots\nmsgid "dose.b"\nmsgstr "y"\n')
    write_po(tmp_path, "zh_CN", "dose", {"dose.a": "甲", "dose.b": "乙"})
    whats = [p.what for p in check_sms(protocol, tmp_path)]
    assert whats
    assert all("unreadable budget comment" in what for what in whats)


def test_a_chinese_sms_is_measured_with_its_choice_line_and_asks_for_no_latin_word(
        tmp_path: Path, protocol: Protocol) -> None:
    """Issue 16: every routine Chinese SMS fits one segment with its choice line and the site's
    signature at the end; `#. segments: 2 en` lets only English use two; a Chinese text that
    asks for a Latin keyword fails."""
    fits = "请" * 40  # + newline + 回复：1 已服，2 未服，3 稍后提醒 (19) + 【8 chars】 = 70
    entries = {"dose.fits": fits, "dose.over": "请" * 61, "dose.latin": "回复TD暂停。",
               "dose.english_long": "请服药。"}
    extra = ('\n#. choices: dose\nmsgid "dose.c_fits"\nmsgstr "' + fits + '"\n'
             '\n#. choices: dose\nmsgid "dose.c_over"\nmsgstr "' + fits + '请"\n'
             '\n#. segments: 2 en\nmsgid "dose.c_two_en"\nmsgstr "' + "请" * 61 + '"\n')
    write_po(tmp_path, "zh_CN", "dose", entries, extra)
    english = dict.fromkeys(entries, "Take it.")
    write_po(tmp_path, "en", "dose", english,
             '\nmsgid "dose.c_fits"\nmsgstr "a"\n\nmsgid "dose.c_over"\nmsgstr "a"\n'
             '\nmsgid "dose.c_two_en"\nmsgstr "' + "Take it. " * 30 + '"\n')
    found = {(p.where.split("/")[0], p.message_id, p.what.split(" ")[0])
             for p in check_sms(protocol, tmp_path)}
    assert found == {("zh_CN", "dose.over", "over"), ("zh_CN", "dose.c_over", "over"),
                     ("zh_CN", "dose.latin", "asks"), ("zh_CN", "dose.c_two_en", "over")}
