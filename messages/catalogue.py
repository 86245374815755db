"""The message catalogue: symbolic message ids rendered in a language with named placeholders.

Catalogues are gettext `.po` files under `messages/locale/<locale>/LC_MESSAGES/<domain>.po`;
a message id is `<domain>.<name>` (e.g. `dose.reminder`), so each feature owns one file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

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
        return hashlib.sha256(self.text.encode()).hexdigest()[:10]

    def render(self, **params: object) -> str:
        """The text with its placeholders filled."""
        return self.text.format(**params)


@cache
def _load(language: str) -> dict[str, str]:
    folder = LOCALE_DIR / LOCALES[language] / "LC_MESSAGES"
    texts: dict[str, str] = {}
    for po in sorted(folder.glob("*.po")):
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=LOCALES[language])
        for message in catalog:
            if message.id and message.string and isinstance(message.string, str):
                texts[str(message.id)] = message.string
    return texts


def message_ids(language: str = "en") -> list[str]:
    """Every message id the product can send (from the given language's catalogue)."""
    return sorted(_load(language))


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
