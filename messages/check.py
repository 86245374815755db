"""Checks on the catalogues themselves: every id in every locale, same placeholders, valid files.

Used by the tests (so a missing translation or a renamed placeholder fails the build) and usable
from a shell: `python -m messages` prints these problems, then the SMS check's, and exits non-zero
if there are any (`messages/__main__.py`: the SMS check builds on this module, not the reverse).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from babel.messages.catalog import Catalog, Message

from messages.catalogue import LOCALE_DIR, LOCALES
from messages.compile import CatalogueSyntaxError, compile_po, parse_po

# The locale whose placeholders the others are compared with (any would do: ids are symbolic).
REFERENCE_LOCALE = "en"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ID_PART = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a catalogue, named by file and message id."""

    where: str
    message_id: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message_id or '(file)'}: {self.what}"


@dataclass
class Domain:
    """One gettext domain: its parsed catalogue per locale (None where missing or unreadable)."""

    name: str
    files: dict[str, Path] = field(default_factory=dict)
    catalogs: dict[str, Catalog] = field(default_factory=dict)


class PlaceholderError(ValueError):
    """A template that str.format cannot read, or with a placeholder that is not a plain name."""


def placeholders(text: str) -> frozenset[str]:
    """The `{names}` a template needs; raises PlaceholderError for `{}`, `{0}`, `{a.b}`, `{`."""
    names = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise PlaceholderError(f"unreadable braces ({exc}); write a literal brace as {{{{ }}}}")\
            from exc
    for _literal, name, spec, _conversion in parsed:
        if name is None:
            continue
        if not _NAME.match(name):
            raise PlaceholderError(f"placeholder {{{name}}} is not a plain lower-case name")
        if spec and "{" in spec:
            raise PlaceholderError(f"placeholder {{{name}}} has a nested format spec")
        names.add(name)
    return frozenset(names)


def domains(locale_dir: Path = LOCALE_DIR,
            locales: Iterable[str] = LOCALES.values()) -> tuple[list[Domain], list[Problem]]:
    """Every domain found in any locale, each parsed in every locale; unreadable files reported."""
    locales = list(locales)
    found: dict[str, Domain] = {}
    problems = []
    for locale in locales:
        for po in sorted((locale_dir / locale / "LC_MESSAGES").glob("*.po")):
            domain = found.setdefault(po.stem, Domain(po.stem))
            domain.files[locale] = po
            try:
                domain.catalogs[locale] = parse_po(po.read_bytes(), locale, _short(po, locale_dir))
            except CatalogueSyntaxError as exc:
                problems.append(Problem(_short(po, locale_dir), "", f"cannot be read: {exc}"))
    return [found[name] for name in sorted(found)], problems


def messages(catalog: Catalog) -> dict[str, Message]:
    """The real entries of a catalogue by id (not the header, not obsolete ones)."""
    return {str(m.id): m for m in catalog if m.id}


def check_catalogues(locale_dir: Path = LOCALE_DIR,
                     locales: Iterable[str] = LOCALES.values()) -> list[Problem]:
    """Every problem in the catalogues: missing files, ids or translations, placeholder drift."""
    locales = list(locales)
    found, problems = domains(locale_dir, locales)
    for domain in found:
        problems += _check_domain(domain, locales, locale_dir)
    return sorted(problems)


def _check_domain(domain: Domain, locales: list[str], locale_dir: Path) -> list[Problem]:
    problems = []
    for locale in locales:
        if locale not in domain.files:
            where = f"{locale}/LC_MESSAGES/{domain.name}.po"
            problems.append(Problem(where, "", "missing: every domain needs a file per locale"))
    for locale, catalog in domain.catalogs.items():
        where = _short(domain.files[locale], locale_dir)
        problems += _check_file(domain.name, catalog, domain.files[locale], where)
    ids = {locale: messages(catalog) for locale, catalog in domain.catalogs.items()}
    every_id = sorted(set().union(*ids.values())) if ids else []
    for message_id in every_id:
        problems += _check_message(domain, message_id, ids, locale_dir)
    return problems


def _check_file(name: str, catalog: Catalog, path: Path, where: str) -> list[Problem]:
    problems = []
    if catalog.charset.lower() != "utf-8":
        problems.append(Problem(where, "", f"charset is {catalog.charset}; use UTF-8"))
    try:
        compile_po(path.read_bytes(), catalog.locale_identifier or "en", where)
    except Exception as exc:  # any failure to compile is a build failure: report it as such
        problems.append(Problem(where, "", f"does not compile to .mo: {exc}"))
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("msgid ") and line != 'msgid ""':
            if line in seen:
                problems.append(Problem(where, line[6:].strip('"'), "duplicate msgid"))
            seen.add(line)
    for message_id, message in messages(catalog).items():
        domain, _, rest = message_id.partition(".")
        if domain != name or not rest or not all(_ID_PART.match(p) for p in rest.split(".")):
            problems.append(Problem(where, message_id,
                                    f"id must be {name}.<name> (lower case, digits, _)"))
        if message.pluralizable:
            problems.append(Problem(where, message_id,
                                    "plural forms are not supported; use a {count} placeholder"))
    return problems


def _check_message(domain: Domain, message_id: str, ids: dict[str, dict[str, Message]],
                   locale_dir: Path) -> list[Problem]:
    problems = []
    names: dict[str, frozenset[str]] = {}
    for locale, entries in ids.items():
        where = _short(domain.files[locale], locale_dir)
        message = entries.get(message_id)
        if message is None:
            problems.append(Problem(where, message_id, "missing (present in another locale)"))
            continue
        text = message.string
        if not isinstance(text, str) or not text.strip():
            problems.append(Problem(where, message_id, "not translated (empty msgstr)"))
            continue
        if message.fuzzy:
            problems.append(Problem(where, message_id, "marked fuzzy: review it, then unmark"))
        try:
            names[locale] = placeholders(text)
        except PlaceholderError as exc:
            problems.append(Problem(where, message_id, str(exc)))
    basis = REFERENCE_LOCALE if REFERENCE_LOCALE in names else min(names, default="")
    reference = names.get(basis, frozenset())
    for locale, found in names.items():
        if found != reference:
            where = _short(domain.files[locale], locale_dir)
            missing = ", ".join(f"{{{n}}}" for n in sorted(reference - found)) or "none"
            extra = ", ".join(f"{{{n}}}" for n in sorted(found - reference)) or "none"
            problems.append(Problem(where, message_id,
                                    f"placeholders differ from {basis}: "
                                    f"missing {missing}; extra {extra}"))
    return problems


def _short(path: Path, locale_dir: Path) -> str:
    try:
        return str(path.relative_to(locale_dir))
    except ValueError:
        return str(path)
