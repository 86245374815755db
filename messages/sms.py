"""SMS wording rules: segment counting, the site signature, and the check on every SMS template.

Lengths follow GSM 03.38 as carriers and Twilio count them: a text of GSM-7 characters fits 160
per single segment (153 per part once split; the extension characters `^{}\\[~]|€` and form feed
take two), anything else is UCS-2 with 70 per single segment (67 per part; characters outside the
Basic Multilingual Plane take two). Chinese text is always UCS-2, so 70 characters.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from messages.catalogue import LOCALE_DIR, LOCALES
from messages.check import PlaceholderError, Problem, domains, messages, placeholders
from messages.samples import sample
from trial.protocol import Protocol

log = logging.getLogger(__name__)

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

# Domains whose messages go to staff (Telegram first). By SMS they may be longer than one segment
# (an alert page must say enough), but they still never name a drug, disease or trial: SMS is not
# private, whoever it is sent to. A message in a patient domain is staff-facing when its name
# starts with `staff_` (e.g. `chat.staff_help`) or it carries the comment `#. audience: staff`.
STAFF_DOMAINS = frozenset({"staff", "digest", "alert"})
DEFAULT_SEGMENTS = 1
_SEGMENTS_COMMENT = re.compile(r"^\s*segments:\s*(\d+)\s*$")
_STAFF_COMMENT = re.compile(r"^\s*audience:\s*staff\s*$")


@dataclass(frozen=True)
class SmsLength:
    """How a text travels by SMS."""

    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def is_gsm7(text: str) -> bool:
    """Whether every character of the text is in the GSM 7-bit alphabet (with its extension)."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def measure(text: str) -> SmsLength:
    """Encoding, length in units and number of segments of a text (an empty text is one)."""
    if is_gsm7(text):
        sizes = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return SmsLength("GSM-7", sum(sizes), _pack(sizes, single=160, part=153))
    sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return SmsLength("UCS-2", sum(sizes), _pack(sizes, single=70, part=67))


def segments(text: str) -> int:
    """The number of SMS segments a text is billed and delivered as."""
    return measure(text).segments


def _pack(sizes: Sequence[int], *, single: int, part: int) -> int:
    """Segments needed: one if it all fits, else parts that never split an escape or pair."""
    if sum(sizes) <= single:
        return 1
    count, used = 1, 0
    for size in sizes:
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return count


def sign(text: str, signature: str) -> str:
    """The text signed with the site's name: `…【名称】` when Chinese, a last line otherwise."""
    signature = signature.strip().strip("【】[]").strip()
    if not signature:
        return text
    if is_gsm7(signature):
        return f"{text}\n{signature}"
    # 【】 is how Chinese carriers and readers expect a sender's signature to look.
    return f"{text}【{signature}】"


def forbidden_words_in(text: str, words: Iterable[str]) -> list[str]:
    """The forbidden words a text contains, ignoring case and full-width forms.

    Latin words match whole words (with a plural s), so "SLE" does not match "sleep"; Chinese
    words match anywhere, since Chinese has no spaces between words.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    found = []
    for word in words:
        needle = unicodedata.normalize("NFKC", word).casefold().strip()
        if not needle:
            continue
        if needle.isascii():
            pattern = rf"(?<![a-z0-9]){re.escape(needle)}(?:s|es)?(?![a-z0-9])"
            hit = re.search(pattern, folded) is not None
        else:
            hit = needle in folded
        if hit:
            found.append(word)
    return found


def signature_for(protocol: Protocol, site_id: str, site_name: str, language: str) -> str:
    """The name an SMS is signed with: the protocol's `sites.<code>.sms_name`, else the site's.

    A registered name that contains a forbidden word (a department such as 风湿免疫科) is not
    used: the message goes unsigned rather than reveal it, and a warning asks for an sms_name.
    """
    site = protocol.sites.get(site_id)
    if site is not None:
        return site.sms_name.get(language).strip()
    name = site_name.strip()
    if forbidden_words_in(name, protocol.sms.forbidden_words):
        log.warning("site %s: its name contains a forbidden word; set sites.%s.sms_name in the "
                    "protocol file (SMS go unsigned until then)", site_id, site_id)
        return ""
    return name


@dataclass(frozen=True)
class SmsTemplate:
    """One message in one language as the SMS check sees it."""

    message_id: str
    language: str
    text: str
    budget: int | None  # segments allowed; None for staff-facing messages
    where: str


def sms_templates(locale_dir: Path = LOCALE_DIR) -> tuple[list[SmsTemplate], list[Problem]]:
    """Every message of every domain in every language, with its segment budget."""
    found, problems = domains(locale_dir, LOCALES.values())
    language_of = {locale: language for language, locale in LOCALES.items()}
    result = []
    for domain in found:
        entries = {locale: messages(catalog) for locale, catalog in domain.catalogs.items()}
        comments: dict[str, list[str]] = {}
        for by_id in entries.values():
            for message_id, message in by_id.items():
                comments.setdefault(message_id, []).extend(message.auto_comments)
        for locale, by_id in entries.items():
            where = f"{locale}/LC_MESSAGES/{domain.name}.po"
            for message_id, message in sorted(by_id.items()):
                if not isinstance(message.string, str) or not message.string:
                    continue  # reported by the catalogue check
                budget, trouble = _budget(message_id, comments[message_id])
                problems += [Problem(where, message_id, t) for t in trouble]
                result.append(SmsTemplate(message_id, language_of[locale], message.string,
                                          budget, where))
    return result, problems


def is_staff_facing(message_id: str, comments: Iterable[str] = ()) -> bool:
    """Whether a message goes to staff: by its domain, its `staff_` name or its comment."""
    domain, _, name = message_id.partition(".")
    return (domain in STAFF_DOMAINS or name.startswith("staff_")
            or any(_STAFF_COMMENT.match(comment) for comment in comments))


def _budget(message_id: str, comments: list[str]) -> tuple[int | None, list[str]]:
    """Segments allowed: none for staff; else 1 unless a `#. segments: N` comment says more."""
    if is_staff_facing(message_id, comments):
        return None, []
    budget, trouble = DEFAULT_SEGMENTS, []
    for comment in comments:
        if comment.strip().startswith("segments"):
            match = _SEGMENTS_COMMENT.match(comment)
            if match and int(match.group(1)) >= 1:
                budget = max(budget, int(match.group(1)))
            else:
                trouble.append(f"unreadable budget comment {comment!r}; write '#. segments: 2'")
    return budget, trouble


def sample_signature(protocol: Protocol, language: str) -> str:
    """The longest signature the protocol's sites can produce (or a realistic sample)."""
    names = [site.sms_name.get(language) for site in protocol.sites.values()]
    names.append(sample("signature", language) or "")
    return max(names, key=lambda name: _cost(sign("", name)))


def _cost(text: str) -> tuple[bool, int]:
    """UCS-2 costs more than any GSM-7 text (it halves what fits), then the longer costs more."""
    length = measure(text)
    return (length.encoding == "UCS-2", length.units)


def check_sms(protocol: Protocol, locale_dir: Path = LOCALE_DIR) -> list[Problem]:
    """Render every template in both languages with sample values, signed; report any over its
    segment budget or containing one of the protocol's `sms.forbidden_words`."""
    templates, problems = sms_templates(locale_dir)
    words = protocol.sms.forbidden_words
    signatures = {language: sample_signature(protocol, language) for language in LOCALES}
    for language, signature in signatures.items():
        for word in forbidden_words_in(signature, words):
            problems.append(Problem("protocol sites", "", f"{language} signature has {word!r}"))
    for item in templates:
        problems += _check_template(item, signatures[item.language], words)
    return sorted(problems)


def _check_template(item: SmsTemplate, signature: str, words: list[str]) -> list[Problem]:
    def problem(what: str) -> Problem:
        return Problem(item.where, item.message_id, what)

    try:
        names = placeholders(item.text)
    except PlaceholderError:
        return []  # reported by the catalogue check
    values = {name: sample(name, item.language) for name in sorted(names)}
    missing = [name for name, value in values.items() if value is None]
    if missing and item.budget is not None:
        return [problem(f"no sample value for {{{name}}}: add one to messages/samples.py")
                for name in missing]
    # Without a budget the length does not matter, only the wording: any stand-in will do.
    rendered = item.text.format(**{name: value or "…" for name, value in values.items()})
    found = [problem(f"contains forbidden word {word!r}: {rendered!r}")
             for word in forbidden_words_in(rendered, words)]
    if item.budget is not None:
        signed = sign(rendered, signature)
        length = measure(signed)
        if length.segments > item.budget:
            detail = f"{length.segments} segments ({length.encoding}, {length.units} units)"
            odd = sorted({ch for ch in rendered if not is_gsm7(ch)})
            if item.language == "en" and odd:
                detail += f"; not GSM-7: {''.join(odd)!r}"
            found.append(problem(f"over budget of {item.budget}: {detail} signed: {signed!r}"))
    return found
