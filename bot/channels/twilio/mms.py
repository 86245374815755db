"""What an inbound MMS carries: Twilio's `NumMedia`, `MediaUrlN` and `MediaContentTypeN` as
media references. The pictures stay at Twilio; nothing is downloaded."""

from __future__ import annotations

from collections.abc import Mapping

from messages.channel import Media

SMS = "sms"
MAX_MEDIA = 10  # Twilio delivers at most 10 media per message
MAX_URL = 1000


def _kind(content_type: str) -> str:
    major = content_type.partition("/")[0].lower()
    return {"image": "photo", "video": "video", "audio": "voice"}.get(major, "document")


def media_of(form: Mapping[str, str]) -> tuple[Media, ...]:
    """The media of an inbound message's form, in Twilio's order (NumMedia bounded)."""
    count = form.get("NumMedia", "0")
    found = []
    for n in range(min(int(count), MAX_MEDIA) if count.isdigit() and len(count) < 4 else 0):
        url = form.get(f"MediaUrl{n}", "")
        if not url.startswith("https://") or len(url) > MAX_URL:
            continue
        content_type = form.get(f"MediaContentType{n}", "")[:100]
        found.append(Media(_kind(content_type), url, content_type, channel=SMS))
    return tuple(found)
