"""Which WeChat template message carries which catalogue message, and how its fields are filled.

An Official Account may send a free-form (customer-service) message only within 48 hours of the
user's last message; at any other time only a template message, of a template approved for the
account. So every message we start (a dose reminder, a visit notice) has a template, and one
`default` template carries any other message outside the window. The file
(`ENGAGE_WECHAT_TEMPLATES`, TOML) names them per catalogue message id:

    [default]
    template_id = "tmpl-notice"
    fields = { first = "title", keyword1 = "rest", remark = "choices" }

    [messages."dose.reminder"]
    template_id = "tmpl-dose"
    fields = { first = "title", keyword1 = "rest", keyword2 = "=每日服药", remark = "choices" }

A field's source is `text` (the whole rendered message), `title` (its first line), `rest` (the
lines after it, or the title when there is one line), `choices` (the numbered answers, as
printed after a free-form message: what the patient types back), or `=literal`. Values come
from the rendered catalogue text, so a template says what the message says, in the patient's
language. `engage protocol check` validates the file (`problems`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCES = ("text", "title", "rest", "choices")
# Messages we start rather than answer, at times the patient did not choose: each needs a
# template of its own (the default's wording is for anything else) and always goes as one.
PROACTIVE = frozenset({"dose.reminder", "dose.reminder_hold_for_visit", "dose.follow_up",
                       "visit.notice_in_days", "visit.notice_tomorrow"})
FIELD_CHARS = 200  # a template keyword value WeChat shows whole


@dataclass(frozen=True)
class Template:
    template_id: str
    fields: dict[str, str] = field(default_factory=dict)

    def data(self, text: str, choices: str) -> dict[str, dict[str, str]]:
        """The `data` object of a template send."""
        title, _, rest = text.strip().partition("\n")
        values = {"text": text.strip(), "title": title.strip(),
                  "rest": rest.strip() or title.strip(), "choices": choices}
        return {name: {"value": _fit(source[1:] if source.startswith("=")
                                     else values.get(source, ""))}
                for name, source in self.fields.items()}


def _fit(value: str) -> str:
    return value if len(value) <= FIELD_CHARS else value[:FIELD_CHARS - 1] + "…"


@dataclass(frozen=True)
class Templates:
    by_message: dict[str, Template] = field(default_factory=dict)
    default: Template | None = None

    def for_message(self, message_id: str) -> Template | None:
        """The template of a catalogue message, else the default one."""
        return self.by_message.get(message_id) or self.default

    def own(self, message_id: str) -> Template | None:
        return self.by_message.get(message_id)


class TemplateFileError(ValueError):
    """The template file cannot be read."""


def _template(name: str, raw: Any) -> Template:
    if not isinstance(raw, dict) or not isinstance(raw.get("template_id"), str):
        raise TemplateFileError(f"{name}: needs template_id = \"...\"")
    fields = raw.get("fields", {})
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise TemplateFileError(f"{name}: fields must map field names to sources")
    return Template(raw["template_id"], dict(fields))


def load(path: Path | None) -> Templates:
    """The templates of a file (none without one: then only free-form messages can go)."""
    if path is None:
        return Templates()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TemplateFileError(f"{path}: {exc}") from exc
    messages = raw.get("messages", {})
    if not isinstance(messages, dict):
        raise TemplateFileError(f"{path}: [messages] must be a table")
    default = _template("default", raw["default"]) if "default" in raw else None
    return Templates({k: _template(f"messages.{k}", v) for k, v in messages.items()}, default)


def problems(templates: Templates, message_ids: set[str]) -> list[str]:
    """What is wrong with a template set: unknown message ids or sources, a proactive message
    (reminders, visit notices) without a template of its own, no default."""
    found = []
    if templates.default is None:
        found.append("wechat templates: no [default] template for messages outside the "
                     "48-hour window")
    named = dict(templates.by_message)
    if templates.default is not None:
        named["default"] = templates.default
    for message_id, template in named.items():
        if message_id != "default" and message_id not in message_ids:
            found.append(f"wechat templates: {message_id} is not a catalogue message")
        if not template.template_id.strip():
            found.append(f"wechat templates: {message_id} has an empty template_id")
        if not template.fields:
            found.append(f"wechat templates: {message_id} fills no field")
        for name, source in template.fields.items():
            if not source.startswith("=") and source not in SOURCES:
                found.append(f"wechat templates: {message_id}.{name}: unknown source "
                             f"{source!r} (one of {', '.join(SOURCES)} or =text)")
    for message_id in sorted(PROACTIVE & message_ids):
        if message_id not in templates.by_message:
            found.append(f"wechat templates: {message_id} is sent outside any conversation "
                         "and needs a template of its own")
    return found
