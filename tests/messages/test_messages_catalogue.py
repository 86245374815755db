"""The catalogues: complete in both languages, same placeholders, compiled, loaded safely."""

from __future__ import annotations

import gettext
import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from messages import catalogue
from messages.catalogue import LOCALE_DIR, LOCALES, load_texts, render, template
from messages.check import check_catalogues, placeholders
from messages.compile import (
    CatalogueSyntaxError,
    compile_po,
    compile_tree,
    mo_texts,
    po_texts,
    source_digest,
)
from tests import ROOT as PROJECT_ROOT

ROOT = PROJECT_ROOT


def write_po(locale_dir: Path, locale: str, domain: str, entries: dict[str, str],
             extra: str = "") -> Path:
    """A small `.po` file, written the way the real ones are."""
    folder = locale_dir / locale / "LC_MESSAGES"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ['msgid ""', 'msgstr ""', '"Content-Type: text/plain; charset=UTF-8\\n"',
             f'"Language: {locale}\\n"', ""]
    for message_id, text in entries.items():
        lines += [f'msgid "{message_id}"', f'msgstr "{text}"', ""]
    path = folder / f"{domain}.po"
    path.write_text("\n".join(lines) + extra, encoding="utf-8")
    return path


def test_bundled_catalogues_are_complete_and_consistent() -> None:
    """Acceptance 1: every id translated in both locales, with the same placeholders."""
    problems = check_catalogues()
    assert problems == [], "\n".join(str(p) for p in problems)


def test_every_catalogue_compiles_with_babel(tmp_path: Path) -> None:
    sources = sorted(LOCALE_DIR.glob("*/LC_MESSAGES/*.po"))
    written = compile_tree(LOCALE_DIR, tmp_path)
    assert len(written) == len(sources) >= len(LOCALES)
    for mo in written:
        po = LOCALE_DIR / mo.relative_to(tmp_path).with_suffix(".po")
        stamp, texts = mo_texts(mo.read_bytes())
        assert stamp == source_digest(po.read_bytes())
        assert texts, f"{mo} is empty"


def test_the_build_hook_compiles_every_catalogue(tmp_path: Path) -> None:
    """setup.py's build_py writes a `.mo` beside every `.po` in the build directory."""
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    built = tmp_path / "messages" / "locale"
    pos = {p.relative_to(built).with_suffix("") for p in built.glob("*/LC_MESSAGES/*.po")}
    mos = {p.relative_to(built).with_suffix("") for p in built.glob("*/LC_MESSAGES/*.mo")}
    assert pos
    assert pos == mos


def test_a_broken_po_fails_compilation_naming_the_file() -> None:
    broken = b'msgid "common.x"\nmsgstr "unterminated\n'
    with pytest.raises(CatalogueSyntaxError, match=r"broken\.po"):
        compile_po(broken, "en", "broken.po")


def test_check_reports_missing_translation_file_and_id(tmp_path: Path) -> None:
    write_po(tmp_path, "en", "dose", {"dose.a": "A", "dose.b": "B"})
    write_po(tmp_path, "zh_CN", "dose", {"dose.a": "甲", "dose.b": ""})
    write_po(tmp_path, "en", "visit", {"visit.a": "A"})
    write_po(tmp_path, "en", "chat", {"chat.a": "A", "chat.only_en": "x"})
    write_po(tmp_path, "zh_CN", "chat", {"chat.a": "甲"})
    found = {(p.where, p.message_id, p.what.split(" ")[0]) for p in check_catalogues(tmp_path)}
    assert ("zh_CN/LC_MESSAGES/dose.po", "dose.b", "not") in found
    assert ("zh_CN/LC_MESSAGES/visit.po", "", "missing:") in found
    assert ("zh_CN/LC_MESSAGES/chat.po", "chat.only_en", "missing") in found
    assert len(found) == 3


def test_check_reports_placeholder_drift(tmp_path: Path) -> None:
    write_po(tmp_path, "en", "dose", {"dose.a": "At {time} take {label}", "dose.b": "{n} days"})
    write_po(tmp_path, "zh_CN", "dose", {"dose.a": "{time}服用{lable}", "dose.b": "{n}天"})
    problems = check_catalogues(tmp_path)
    assert [(p.where, p.message_id) for p in problems] == [("zh_CN/LC_MESSAGES/dose.po", "dose.a")]
    assert "missing {label}; extra {lable}" in problems[0].what


@pytest.mark.parametrize(("text", "complaint"), [
    ("take {0}", "not a plain"),
    ("take {}", "not a plain"),
    ("take {label.en}", "not a plain"),
    ("take {label", "unreadable braces"),
    ("take } now", "unreadable braces"),
])
def test_check_reports_unusable_placeholders(tmp_path: Path, text: str, complaint: str) -> None:
    write_po(tmp_path, "en", "dose", {"dose.a": text})
    write_po(tmp_path, "zh_CN", "dose", {"dose.a": "服用"})
    whats = [p.what for p in check_catalogues(tmp_path) if p.where.startswith("en/")]
    assert len(whats) == 1
    assert complaint in whats[0]


def test_check_reports_bad_ids_fuzzy_duplicates_and_syntax(tmp_path: Path) -> None:
    write_po(tmp_path, "en", "dose", {"reminder": "A", "dose.Bad-Name": "B", "dose.ok": "C"},
             extra='\n#, fuzzy\nmsgid "dose.fuzzy"\nmsgstr "D"\n\nmsgid "dose.ok"\nmsgstr "E"\n')
    write_po(tmp_path, "zh_CN", "dose", {"reminder": "甲", "dose.Bad-Name": "乙", "dose.ok": "丙",
                                         "dose.fuzzy": "丁"})
    write_po(tmp_path, "en", "visit", {"visit.a": "A"}, extra='msgid "visit.b"\nmsgstr "oops\n')
    write_po(tmp_path, "zh_CN", "visit", {"visit.a": "甲"})
    whats = " | ".join(str(p) for p in check_catalogues(tmp_path))
    assert "en/LC_MESSAGES/dose.po: reminder: id must be dose.<name>" in whats
    assert "dose.Bad-Name: id must be" in whats
    assert "dose.fuzzy: marked fuzzy" in whats
    assert "dose.ok: duplicate msgid" in whats
    assert "en/LC_MESSAGES/visit.po: (file): cannot be read" in whats


def test_placeholders_of_a_template() -> None:
    assert placeholders("{subject} {visit} on {date}, {{literal}}") == {"subject", "visit", "date"}
    assert placeholders("no placeholders") == frozenset()


def test_runtime_reads_a_current_mo_without_parsing_the_po(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    po = write_po(tmp_path, "en", "dose", {"dose.a": "Take it at {time}."})
    po.with_suffix(".mo").write_bytes(compile_po(po.read_bytes(), "en"))
    with caplog.at_level(logging.WARNING):
        texts = load_texts(tmp_path, "en")
    assert texts == {"dose.a": "Take it at {time}."}
    assert caplog.records == []


def test_runtime_compiles_a_missing_or_stale_mo_in_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    po = write_po(tmp_path, "en", "dose", {"dose.a": "Old wording."})
    po.with_suffix(".mo").write_bytes(compile_po(po.read_bytes(), "en"))
    write_po(tmp_path, "en", "dose", {"dose.a": "New wording."})  # edited after the build
    write_po(tmp_path, "en", "visit", {"visit.a": "Never compiled."})
    with caplog.at_level(logging.WARNING, logger="messages.catalogue"):
        texts = load_texts(tmp_path, "en")
    assert texts == {"dose.a": "New wording.", "visit.a": "Never compiled."}
    warnings = sorted(r.getMessage() for r in caplog.records)
    assert len(warnings) == 2
    assert "dose.mo is older than dose.po" in warnings[0]
    assert "visit.po is not compiled" in warnings[1]


def test_runtime_survives_a_corrupt_mo(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    po = write_po(tmp_path, "zh_CN", "dose", {"dose.a": "该服药了。"})
    po.with_suffix(".mo").write_bytes(compile_po(po.read_bytes(), "zh_CN")[:40])
    with caplog.at_level(logging.WARNING, logger="messages.catalogue"):
        assert load_texts(tmp_path, "zh_CN") == {"dose.a": "该服药了。"}
    assert "dose.mo is unreadable" in caplog.text


def test_mo_and_po_give_the_same_texts_for_every_catalogue() -> None:
    for po in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/*.po")):
        locale = po.parent.parent.name
        _, from_mo = mo_texts(compile_po(po.read_bytes(), locale))
        fallback = gettext.GNUTranslations(io.BytesIO(compile_po(po.read_bytes(), locale)))
        assert from_mo == po_texts(po.read_bytes(), locale), po
        assert all(fallback.gettext(key) == text for key, text in from_mo.items())


def test_render_takes_the_language_at_render_time() -> None:
    assert render("common.yes", "zh") == "是"
    assert render("common.yes", "en") == "Yes"
    assert template("common.yes", "zh").version != template("common.yes", "en").version


def test_missing_message_or_language_is_an_error() -> None:
    with pytest.raises(catalogue.MissingMessageError):
        render("common.no_such_message", "en")
    with pytest.raises(catalogue.MissingMessageError):
        render("common.yes", "fr")


def test_message_ids_list_what_the_product_can_send() -> None:
    ids = catalogue.message_ids("en")
    assert ids == catalogue.message_ids("zh")
    assert {"common.unknown_sender", "common.not_understood"} <= set(ids)


@pytest.mark.parametrize("language", sorted(LOCALES))
def test_common_messages_render(language: str) -> None:
    for message_id in catalogue.message_ids(language):
        if message_id.startswith("common."):
            assert render(message_id, language).strip()
