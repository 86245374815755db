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
from functools import cache, partial
from pathlib import Path
from typing import Literal

from messages.catalogue import LOCALE_DIR, LOCALES
from messages.channel import Choice
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
# `#. segments: 2` for both languages, `#. segments: 2 en` for one (comments of both files count).
# `#. segments: 2 one_way` for the message as said on a one-way route (`one_way_text`).
_SEGMENTS_COMMENT = re.compile(r"^\s*segments:\s*(\d+)(?:\s+([a-z]{2}|one_way))?\s*$")
_STAFF_COMMENT = re.compile(r"^\s*audience:\s*staff\s*$")
_CHOICES_COMMENT = re.compile(r"^\s*choices:\s*([a-z_]+)\s*$")

# The answers an SMS prints under a message, by set name: (what the patient types, label id).
# What is printed is what is understood when sent back
# (tests/messages/test_messages_choices.py walks every set in every language through the real
# parsers). A word that is a catalogue id
# (`chat.language_zh_word`) is printed alone, in the recipient's language; a number is printed
# before its label (`1 已服`). A template sent with a set says so with `#. choices: <set>`, so the
# SMS check measures it with its choice line and signature.
_SCALE_SIZE = 5
SMS_CHOICES: dict[str, tuple[tuple[str, str], ...]] = {
    "dose": (("1", "dose.button_taken"), ("2", "dose.button_not_taken"),
             ("3", "dose.button_snooze")),
    "dose_answer": (("1", "dose.button_taken"), ("2", "dose.button_not_taken")),
    **{scale: tuple((str(value + 1), f"questionnaire.{scale}_{value}")
                    for value in range(_SCALE_SIZE))
       for scale in ("frequency", "severity", "interference")},
    "temperature": (("0", "questionnaire.not_measured"),),
    "language": (("chat.language_zh_word", "chat.language_zh"),
                 ("chat.language_en_word", "chat.language_en")),
}


def _catalogue_id(word: str) -> bool:
    return "." in word and " " not in word and word.split(".", 1)[0].isalpha()


def printed_word(word: str, language: str) -> str:
    """What an SMS prints for a choice's word: the word, or the catalogue text it names."""
    from messages import catalogue

    return catalogue.render(word, language) if _catalogue_id(word) else word


def choice_line(options: Sequence[tuple[str, str]], language: str) -> str:
    """`回复：1 已服　2 未服　3 稍后提醒` from (word, label text) pairs; "" when there are none.

    A numbered choice prints its number and label; a word choice prints the word alone.
    """
    from messages import catalogue

    parts = []
    for word, label in options:
        if not word:
            continue  # a Telegram-only button
        shown = printed_word(word, language)
        parts.append(f"{shown} {label}" if shown.isdigit() else shown)
    if not parts:
        return ""
    separator = catalogue.render("chat.sms_choice_separator", language)
    return catalogue.render("chat.sms_choices", language, options=separator.join(parts))


def set_line(name: str, language: str) -> str:
    """The choice line of a named set (`SMS_CHOICES`) in a language."""
    from messages import catalogue

    return choice_line([(word, catalogue.render(label, language))
                        for word, label in SMS_CHOICES[name]], language)


def compose(text: str, line: str, signature: str) -> str:
    """The whole SMS: the text, its choice line, then the site's signature at the very end (as
    Chinese carriers require).

    To a site whose route cannot receive replies (a `Signature` with `one_way`): no choice line
    and no invitation to reply (`one_way_text`), the site's phone and 120 instead.
    """
    if isinstance(signature, Signature) and signature.one_way:
        text = one_way_text(text, signature.language)
        joiner = "" if signature.language == "zh" else " "
        text = f"{text}{joiner}{signature.one_way}" if text else signature.one_way
        line = ""
    body = f"{text}\n{line}" if line else text
    return sign(body, signature)


def render(text: str, choices: Sequence[Choice], language: str, signature: str = "") -> str:
    """The SMS as it is stored and sent (`study.outgoing` renders it once, at queueing): the
    text, its choice line (`回复：1 已服，2 未服，3 稍后提醒`, from the choices' own labels in
    the recipient's language; a choice without an SMS word is a Telegram-only button), then
    the site's signature at the very end (`compose`)."""
    line = choice_line([(c.sms_word, c.label) for c in choices], language)
    return compose(text, line, signature)


# --- one-way routes ------------------------------------------------------------------------
# Where a site's SMS route cannot receive replies (`sms.one_way_sites`, e.g. international SMS
# into mainland China), every SMS to its patients is rendered here, whatever queued it: a
# message `X` with a one-way wording `X_one_way` in the catalogue is said that way, any other
# sentence that still asks for a reply is left out, and the catalogue's `chat.sms_no_reply` line
# (the site's phone and 120) is added. The SMS check renders every template so.
ONE_WAY_SUFFIX = "_one_way"
# A sentence with one of these asks for an answer: a one-way SMS leaves it out (it never
# contains 回复 or "reply").
REPLY_WORDS = re.compile(r"回复|发消息|告诉我们|写下|reply|\bsend\b|\bwrite to us\b|\btell us\b|"
                         r"\btext us\b", re.IGNORECASE)
# A sentence ends at Chinese end punctuation, a line break, or a Latin one before a space (not
# after a one-letter abbreviation: "e.g. ABCD2345" is one sentence).
_SENTENCE = re.compile(r".*?(?:[。！？]+|(?<!\b[A-Za-z])[.!?]+(?=\s|$)|\n|$)[ \t]*")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class Signature(str):
    """The name a site's patient SMS are signed with (`signature_for`); `first` where the site
    signs at the start (`【名称】…`); for a site on a one-way route also `one_way`, the line that
    replaces every invitation to reply, in `language`."""

    one_way: str
    language: str
    first: bool

    def __new__(cls, name: str, *, one_way: str = "", language: str = "",
                first: bool = False) -> Signature:
        value = super().__new__(cls, name)
        value.one_way = one_way
        value.language = language
        value.first = first
        return value


def one_way_line(phone: str, language: str) -> str:
    """`如有疑问或不适请致电{phone}，紧急请拨120。` (without a phone, the 120 line alone)."""
    from messages import catalogue

    if phone.strip():
        return catalogue.render("chat.sms_no_reply", language, phone=phone.strip())
    return catalogue.render("chat.sms_no_reply_no_phone", language)


@cache
def _one_way_wordings(language: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """(pattern of a rendered message, its one-way template) for every message with one."""
    from messages import catalogue

    ids = set(catalogue.message_ids(language))
    found = []
    for variant in ids:
        if not variant.endswith(ONE_WAY_SUFFIX) or variant.removesuffix(ONE_WAY_SUFFIX) not in ids:
            continue
        base = catalogue.template(variant.removesuffix(ONE_WAY_SUFFIX), language).text
        found.append((len(base), _rendered_pattern(base),
                      catalogue.template(variant, language).text))
    found.sort(key=lambda item: -item[0])  # the longest first: a message inside another
    return tuple((pattern, text) for _, pattern, text in found)


def _rendered_pattern(text: str) -> re.Pattern[str]:
    """A pattern matching the text rendered with any values, capturing each placeholder."""
    parts, seen, at = [], set(), 0
    for match in _PLACEHOLDER.finditer(text):
        parts.append(re.escape(text[at:match.start()]))
        name = match.group(1)
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
        seen.add(name)
        at = match.end()
    parts.append(re.escape(text[at:]))
    return re.compile("".join(parts), re.DOTALL)


def _said_so(wording: str, match: re.Match[str]) -> str:
    return wording.format(**match.groupdict())


def one_way_text(text: str, language: str) -> str:
    """A message as said where no reply can come back: the catalogue's one-way wording of each
    message that has one, and no sentence that asks for a reply."""
    for pattern, wording in _one_way_wordings(language):
        text = pattern.sub(partial(_said_so, wording), text)
    kept = [s for s in _SENTENCE.findall(text) if s and not REPLY_WORDS.search(s)]
    return "".join(kept).strip()


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
    """The text signed with the site's name: `…【名称】` when Chinese, a last line otherwise;
    at the start (`【名称】…`, `Name: …`) where the site signs first (`Signature.first`)."""
    first = isinstance(signature, Signature) and signature.first
    signature = signature.strip().strip("【】[]").strip()
    if not signature:
        return text
    if is_gsm7(signature):
        return f"{signature}: {text}" if first else f"{text}\n{signature}"
    # 【】 is how Chinese carriers and readers expect a sender's signature to look.
    return f"【{signature}】{text}" if first else f"{text}【{signature}】"


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
    """The name an SMS is signed with: the protocol's `sites.<code>.sms_name`, else the site's;
    a `Signature` carrying the one-way line for a site in `sms.one_way_sites`, and saying so
    where the site signs at the start (`sites.<code>.sms_name_at = "start"`).

    A registered name that contains a forbidden word (a department such as 风湿免疫科) is not
    used: the message goes unsigned rather than reveal it, and a warning asks for an sms_name.
    """
    site = protocol.sites.get(site_id)
    if site is not None:
        name = site.sms_name.get(language).strip()
    else:
        name = site_name.strip()
        if forbidden_words_in(name, protocol.sms.forbidden_words):
            log.warning("site %s: its name contains a forbidden word; set sites.%s.sms_name in "
                        "the protocol file (SMS go unsigned until then)", site_id, site_id)
            name = ""
    first = site is not None and site.sms_name_at == "start"
    if site_id in protocol.sms.one_way_sites:
        # No reply can come back on this site's route: every SMS gives its phone and 120.
        phone = site.phone if site is not None else ""
        return Signature(name, one_way=one_way_line(phone, language), language=language,
                         first=first)
    return Signature(name, language=language, first=True) if first else name


@dataclass(frozen=True)
class SmsTemplate:
    """One message in one language as the SMS check sees it."""

    message_id: str
    language: str
    text: str
    budget: int | None  # segments allowed; None for staff-facing messages
    where: str
    choices: str = ""  # the SMS_CHOICES set it is sent with (`#. choices: dose`), if any
    one_way_budget: int | None = None  # segments allowed on a one-way route


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
                budget, trouble = _budget(message_id, comments[message_id],
                                          language_of[locale])
                one_way, _ = _budget(message_id, comments[message_id], "one_way")
                choices, more = _choices(comments[message_id])
                problems += [Problem(where, message_id, t) for t in (*trouble, *more)]
                result.append(SmsTemplate(message_id, language_of[locale], message.string,
                                          budget, where, choices, one_way))
    return result, problems


def is_staff_facing(message_id: str, comments: Iterable[str] = ()) -> bool:
    """Whether a message goes to staff: by its domain, its `staff_` name or its comment."""
    domain, _, name = message_id.partition(".")
    return (domain in STAFF_DOMAINS or name.startswith("staff_")
            or any(_STAFF_COMMENT.match(comment) for comment in comments))


def _budget(message_id: str, comments: list[str],
            language: str = "") -> tuple[int | None, list[str]]:
    """Segments allowed: none for staff; else 1 unless a `#. segments: N` comment (or
    `#. segments: N <language>` for this language, `#. segments: N one_way` for the one-way
    wording when `language` is "one_way") says more."""
    if is_staff_facing(message_id, comments):
        return None, []
    budget, trouble = DEFAULT_SEGMENTS, []
    for comment in comments:
        if comment.strip().startswith("segments"):
            match = _SEGMENTS_COMMENT.match(comment)
            if match and int(match.group(1)) >= 1:
                if match.group(2) in (None, language):
                    budget = max(budget, int(match.group(1)))
            else:
                trouble.append(f"unreadable budget comment {comment!r}; write '#. segments: 2'")
    return budget, trouble


def _choices(comments: list[str]) -> tuple[str, list[str]]:
    """The choice set a `#. choices: <set>` comment names, and any trouble with it."""
    for comment in comments:
        if comment.strip().startswith("choices"):
            match = _CHOICES_COMMENT.match(comment)
            if match and match.group(1) in SMS_CHOICES:
                return match.group(1), []
            return "", [f"unknown choice set in {comment!r}; one of {', '.join(SMS_CHOICES)}"]
    return "", []


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
    """Render every template in both languages with sample values and the protocol's own (its
    dose labels), with its choice line and signed; report any over its segment budget,
    containing one of the protocol's `sms.forbidden_words`, or (Chinese) asking for a Latin
    keyword to be typed."""
    templates, problems = sms_templates(locale_dir)
    words = protocol.sms.forbidden_words
    signatures = {language: sample_signature(protocol, language) for language in LOCALES}
    for language, signature in signatures.items():
        for word in forbidden_words_in(signature, words):
            problems.append(Problem("protocol sites", "", f"{language} signature has {word!r}"))
    one_way = {language: one_way_signature(protocol, language, signature)
               for language, signature in signatures.items()}
    problems += _check_one_way_wordings(templates)
    problems += _check_one_way_sites(protocol)
    for item in templates:
        labels: list[str | None] = [label.get(item.language)
                                    for label in protocol.dose.label.values()]
        found: set[Problem] = set()
        for label in labels or [None]:
            values = {"label": label, "dose_label": label} if label else {}
            found.update(_check_template(item, signatures[item.language], words, values))
            if protocol.sms.one_way_sites:  # as said to them, with their phones
                found.update(_check_template(item, one_way[item.language], words, values))
        problems += found
    return sorted(problems)


# Parts of other messages, never sent alone: not measured as one-way messages of their own.
ONE_WAY_PARTS = frozenset({"chat.sms_choices", "chat.sms_choice_separator", "chat.sms_no_reply",
                           "chat.sms_no_reply_no_phone",
                           *(label for choices in SMS_CHOICES.values() for _, label in choices)})
# A visit notice is its head and its instructions joined (study.visits): measured whole by the
# simulation (tests/bot/channels/twilio/test_sms_one_way.py), not part by part.
ONE_WAY_PART_DOMAINS = ("visit.",)


def one_way_signature(protocol: Protocol, language: str, name: str) -> Signature:
    """The longest one-way signature the protocol can produce: its one-way sites' phones (or a
    sample phone when it has none), signed with `name`."""
    phones = [site.phone for code, site in protocol.sites.items()
              if code in protocol.sms.one_way_sites] or [sample("phone", language) or ""]
    line = max((one_way_line(phone, language) for phone in phones),
               key=lambda text: _cost(text))
    return Signature(name, one_way=line, language=language)


def _check_one_way_wordings(templates: Sequence[SmsTemplate]) -> list[Problem]:
    """A one-way wording (`X_one_way`) needs its message `X` and no placeholder `X` lacks."""
    by_key = {(t.message_id, t.language): t for t in templates}
    problems = []
    for item in templates:
        if not item.message_id.endswith(ONE_WAY_SUFFIX):
            continue
        base = by_key.get((item.message_id.removesuffix(ONE_WAY_SUFFIX), item.language))
        if base is None:
            problems.append(Problem(item.where, item.message_id,
                                    "a one-way wording of no message"))
            continue
        try:
            extra = placeholders(item.text) - placeholders(base.text)
        except PlaceholderError:
            continue  # reported by the catalogue check
        if extra:
            problems.append(Problem(item.where, item.message_id, "placeholders its message "
                                    f"does not have: {', '.join(sorted(extra))}"))
    return problems


def _check_one_way_sites(protocol: Protocol) -> list[Problem]:
    """Each one-way site needs `[sites.<code>]` with the phone its SMS give."""
    return [Problem("protocol sms.one_way_sites", code,
                    f"no phone for its one-way SMS: set sites.{code}.phone")
            for code in protocol.sms.one_way_sites
            if code not in protocol.sites or not protocol.sites[code].phone.strip()]


# Chinese texts that may show Latin letters to type: Telegram's own /start command with a link
# code (the code is Latin by nature). Nothing else: a Chinese patient types Chinese or numbers.
LATIN_ALLOWED = frozenset({"chat.link_needed"})
_LATIN_WORD = re.compile(r"/?[A-Za-z][A-Za-z-]*")


def latin_keywords(text: str) -> list[str]:
    """The Latin-letter words of a text a patient could type as a keyword or command."""
    from messages.keywords import parse_keyword, parse_language

    found = []
    for match in _LATIN_WORD.finditer(unicodedata.normalize("NFKC", text)):
        word = match.group(0)
        if word.startswith("/") or parse_keyword(word) is not None \
                or parse_language(word) is not None:
            found.append(word)
    return found


def _check_template(item: SmsTemplate, signature: str, words: list[str],
                    values_given: dict[str, str] | None = None) -> list[Problem]:
    def problem(what: str) -> Problem:
        return Problem(item.where, item.message_id, what)

    try:
        names = placeholders(item.text)
    except PlaceholderError:
        return []  # reported by the catalogue check
    given = values_given or {}
    values = {name: given.get(name) or sample(name, item.language) for name in sorted(names)}
    missing = [name for name, value in values.items() if value is None]
    if missing and item.budget is not None:
        return [problem(f"no sample value for {{{name}}}: add one to messages/samples.py")
                for name in missing]
    # Without a budget the length does not matter, only the wording: any stand-in will do.
    rendered = item.text.format(**{name: value or "…" for name, value in values.items()})
    line = set_line(item.choices, item.language) if item.choices else ""
    found = [problem(f"contains forbidden word {word!r}: {rendered!r}")
             for word in forbidden_words_in(f"{rendered}\n{line}", words)]
    if item.budget is not None and item.language == "zh" \
            and item.message_id not in LATIN_ALLOWED:
        found += [problem(f"asks a Chinese reader to type the Latin word {word!r}: {rendered!r}")
                  for word in latin_keywords(f"{rendered}\n{line}")]
    budget = item.budget
    if isinstance(signature, Signature) and signature.one_way:
        if budget is None or item.message_id in ONE_WAY_PARTS \
                or item.message_id.startswith(ONE_WAY_PART_DOMAINS) \
                or "button_" in item.message_id or item.message_id.endswith(ONE_WAY_SUFFIX):
            return []  # staff are not on one-way routes; a wording is checked as its message
        budget = max(budget, item.one_way_budget or 0)
        said = one_way_text(rendered, item.language)
        if rendered.strip() and not said:
            found.append(problem(f"says nothing on a one-way route (every sentence asks for "
                                 f"a reply): add {item.message_id}{ONE_WAY_SUFFIX}"))
        found += [problem(f"asks for a reply on a one-way route: {w!r}")
                  for w in REPLY_WORDS.findall(compose(rendered, line, signature))]
    if budget is not None:
        signed = compose(rendered, line, signature)
        length = measure(signed)
        if length.segments > budget:
            detail = f"{length.segments} segments ({length.encoding}, {length.units} units)"
            odd = sorted({ch for ch in signed if not is_gsm7(ch)})
            if item.language == "en" and odd:
                detail += f"; not GSM-7: {''.join(odd)!r}"
            where = " one-way" if isinstance(signature, Signature) and signature.one_way else ""
            found.append(problem(f"over{where} budget of {budget}: {detail} signed: {signed!r}"))
    return found
