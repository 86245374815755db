"""Compiling `.po` catalogues to gettext `.mo` files, stamped with the source they came from.

Imported by `setup.py` at build time (by file path, so it must only need babel and the standard
library) and by the catalogue at start-up. A compiled `.mo` records the SHA-256 of its `.po` in
its `Project-Id-Version` header; the runtime trusts a `.mo` only when that stamp matches the `.po`
beside it, so a stale `.mo` (a `.po` edited after install) is never used.
"""

from __future__ import annotations

import gettext
import hashlib
import io
import re
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po

PROJECT = "engage-catalogue"
STAMP_PREFIX = "po-sha256:"


class CatalogueSyntaxError(ValueError):
    """A `.po` file that cannot be parsed; the message names the file and line."""


def source_digest(po_bytes: bytes) -> str:
    """The stamp identifying one `.po` file's content."""
    return STAMP_PREFIX + hashlib.sha256(po_bytes).hexdigest()


# One line of a .po file. Babel silently mends some mistakes (an unterminated string loses its
# last character), so lines are checked first: a typo must fail the build, not change a message.
_STRING = r'"(?:[^"\\]|\\["\\ntr])*"'
_LINE = re.compile(
    rf"^(?:\s*|#.*|(?:msgctxt|msgid|msgid_plural|msgstr|msgstr\[\d+\])\s+{_STRING}\s*"
    rf"|\s*{_STRING}\s*)$"
)


def parse_po(po_bytes: bytes, locale: str, source: str = "<po>") -> Catalog:
    """Parse a `.po` file strictly: any syntax error raises CatalogueSyntaxError."""
    try:
        lines = po_bytes.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CatalogueSyntaxError(f"{source}: not UTF-8 ({exc})") from exc
    for number, line in enumerate(lines, start=1):
        if not _LINE.match(line):
            raise CatalogueSyntaxError(f"{source}:{number}: not a valid .po line: {line!r}")
    try:
        return read_po(io.BytesIO(po_bytes), locale=locale, abort_invalid=True)
    except (PoFileError, UnicodeDecodeError, ValueError) as exc:
        raise CatalogueSyntaxError(f"{source}: {exc}") from exc


def compile_po(po_bytes: bytes, locale: str, source: str = "<po>") -> bytes:
    """The `.mo` bytes of a `.po` file, stamped with its digest (fuzzy entries left out)."""
    catalog = parse_po(po_bytes, locale, source)
    catalog.project = PROJECT
    catalog.version = source_digest(po_bytes)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    return buffer.getvalue()


def compile_tree(source_dir: Path, target_dir: Path) -> list[Path]:
    """Compile every `<locale>/LC_MESSAGES/<domain>.po` under source_dir into target_dir."""
    written = []
    for po in sorted(source_dir.glob("*/LC_MESSAGES/*.po")):
        locale = po.parent.parent.name
        mo = target_dir / po.relative_to(source_dir).with_suffix(".mo")
        mo.parent.mkdir(parents=True, exist_ok=True)
        mo.write_bytes(compile_po(po.read_bytes(), locale, str(po)))
        written.append(mo)
    return written


def mo_texts(mo_bytes: bytes) -> tuple[str, dict[str, str]]:
    """The stamp and the message texts of a compiled `.mo` (read with the standard gettext)."""
    translations = gettext.GNUTranslations(io.BytesIO(mo_bytes))
    stamp = translations.info().get("project-id-version", "").removeprefix(PROJECT).strip()
    # GNUTranslations keeps its table in `_catalog`; public gettext() needs every id in advance.
    table: dict[object, str] = translations._catalog  # type: ignore[attr-defined]
    texts = {key: value for key, value in table.items() if isinstance(key, str) and key and value}
    return stamp, texts


def po_texts(po_bytes: bytes, locale: str, source: str = "<po>") -> dict[str, str]:
    """The message texts of a `.po` file, as the `.mo` would hold them (no fuzzy, no empty)."""
    catalog = parse_po(po_bytes, locale, source)
    return {
        str(message.id): message.string
        for message in catalog
        if message.id and isinstance(message.string, str) and message.string
        and not message.fuzzy
    }
