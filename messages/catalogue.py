"""The message catalogue: symbolic message ids rendered in a language with named placeholders.

Catalogues are gettext `.po` files under `messages/locale/<locale>/LC_MESSAGES/<domain>.po`;
a message id is `<domain>.<name>` (e.g. `dose.reminder`), so each feature owns one file.
Installation compiles them to `.mo` (see `messages/compile.py` and `setup.py`); start-up reads a
`.mo` only when its stamp matches its `.po`, and otherwise compiles the `.po` in memory (with a
warning), so a missing or stale `.mo` never stops the service nor shows old wording.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from messages.compile import mo_texts, po_texts, source_digest

log = logging.getLogger(__name__)

LOCALE_DIR = Path(__file__).parent / "locale"
LOCALES = {"zh": "zh_CN", "en": "en"}


class MissingMessageError(KeyError):
    """A message id with no text in a language: a bug, never shown to a user."""


@dataclass(frozen=True)
class Template:
    """One message in one language."""

    id: str
    language: str
    text: str

    @property
    def version(self) -> str:
        """Short hash of the text: the outbox records which wording went out."""
        return _version(self.text)

    def render(self, **params: object) -> str:
        """The text with its placeholders filled."""
        return self.text.format(**params)


def domain_texts(folder: Path, domain: str, locale: str) -> dict[str, str]:
    """One domain's texts: from its `.mo` when current, else compiled from its `.po`."""
    po, mo = folder / f"{domain}.po", folder / f"{domain}.mo"
    po_bytes = po.read_bytes() if po.exists() else None
    if mo.exists():
        try:
            stamp, texts = mo_texts(mo.read_bytes())
        except (OSError, ValueError, struct.error) as exc:  # a truncated or foreign file
            if po_bytes is None:
                raise
            log.warning("catalogue %s is unreadable (%s); compiling the .po in memory", mo, exc)
        else:
            if po_bytes is None or stamp == source_digest(po_bytes):
                return texts
            log.warning("catalogue %s is older than %s; compiling the .po in memory",
                        mo, po.name)
    else:
        log.warning("catalogue %s is not compiled; compiling the .po in memory", po)
    if po_bytes is None:  # unreachable: the domain was found by one of its two files
        raise FileNotFoundError(po)
    return po_texts(po_bytes, locale, str(po))


def load_texts(locale_dir: Path, locale: str) -> dict[str, str]:
    """Every message text of one locale, all domains."""
    folder = locale_dir / locale / "LC_MESSAGES"
    domains = sorted({path.stem for path in folder.glob("*.po")}
                     | {path.stem for path in folder.glob("*.mo")})
    texts: dict[str, str] = {}
    for domain in domains:
        texts.update(domain_texts(folder, domain, locale))
    return texts


@cache
def _load(language: str) -> dict[str, str]:
    return load_texts(LOCALE_DIR, LOCALES[language])


@lru_cache(maxsize=1024)  # the catalogue's texts are few; a day's reminders ask for the same ones
def _version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def message_ids(language: str = "en") -> list[str]:
    """Every message id the product can send (from the given language's catalogue)."""
    return sorted(_load(language))


_CJK = re.compile(r"[\u3400-\u9fff]")
# The trial's own language: a reader whose language is unknown or unsupported reads this one.
FALLBACK_LANGUAGE = "zh"


def reader_language(language: str | None) -> str:
    """The language a person's messages are rendered in: theirs, else FALLBACK_LANGUAGE (the
    one rule for patients, staff and admins alike)."""
    return language if language in LOCALES else FALLBACK_LANGUAGE


def shortened(text: str, limit: int) -> str:
    """A text cut with an ellipsis so that it is at most `limit` characters (a patient's words
    quoted to staff, a message a provider would refuse as too long)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def language_of(text: str) -> str:
    """The language a text is written in, to answer it in: zh when it has Chinese characters,
    else en."""
    return "zh" if _CJK.search(text) else "en"


def template(message_id: str, language: str) -> Template:
    """The template of a message in a language."""
    if language not in LOCALES:
        raise MissingMessageError(f"unknown language {language!r}")
    try:
        return Template(message_id, language, _load(language)[message_id])
    except KeyError:
        raise MissingMessageError(f"{message_id} has no {language} text") from None


def render(message_id: str, language: str, **params: object) -> str:
    """Render a message in a language."""
    return template(message_id, language).render(**params)
