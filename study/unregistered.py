"""An urgent text from someone we do not know: a family member's phone, a new number, an unknown
Telegram chat. It is triaged like a patient's report; when it is an emergency or needs the
study team today, the sender gets the safety reply (call 120 / contact your study team) every
time, and an alert marked "unregistered sender" pages the site whose number it was written to,
or every site when that cannot be known (Telegram, or a number no site has). The alert keeps
the sender (staff see it masked) and the triage reasons; there is no patient and no report.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import Actor
from storage.models import Alert, Site
from study import alerts
from study.replies import Reply
from study.senders import UNREGISTERED
from trial.protocol import Protocol, Tier
from trial.triage import Report, triage

KIND = UNREGISTERED
REPLIES = {Tier.EMERGENCY: "report.unregistered_emergency",
           Tier.SAME_DAY: "report.unregistered_same_day"}
_RANK = {Tier.SAME_DAY.value: 1, Tier.EMERGENCY.value: 2}
_DIGITS = re.compile(r"\D")
def _digits(number: str) -> str:
    return _DIGITS.sub("", number)


def _same_number(written_to: str, site_phone: str) -> bool:
    """The number a text was written to is the site's (E.164, or the site's number written
    without its country code)."""
    to, phone = _digits(written_to), _digits(site_phone)
    if len(to) < 7 or len(phone) < 7:
        return False
    return to == phone or to.endswith(phone) or phone.endswith(to)


async def sites_for(session: AsyncSession, protocol: Protocol, written_to: str, *,
                    lock: bool = False) -> list[Site]:
    """The site whose number a text was written to (one of its `sites.<code>.sms_numbers` in
    the protocol, else its registered phone); every site when that cannot be known."""
    query = select(Site).order_by(Site.id)
    sites = list((await session.execute(query.with_for_update() if lock else query)).scalars())
    if not written_to:
        return sites
    configured = [s for s in sites if s.id in protocol.sites and any(
        _same_number(written_to, n) for n in protocol.sites[s.id].sms_numbers)]
    registered = [s for s in sites if s.phone and _same_number(written_to, s.phone)]
    return configured[:1] or registered[:1] or sites


async def receive(session: AsyncSession, protocol: Protocol, *, sender: str, written_to: str,
                  text: str, now: datetime) -> Reply | None:
    """Triage a stranger's text: the safety reply (safety lane) if it is urgent, else None.

    `sender` is the phone (E.164) or `telegram:<chat id>`; `written_to` the number the SMS was
    sent to ("" for Telegram). An alert is opened per site concerned, unless one from the same
    sender at the same or a higher tier is still unresolved (a second text is answered, not
    paged again).
    """
    if not text.strip():
        return None
    assessment = triage(Report(text), protocol.triage)
    if not assessment.tier.is_urgent:
        return None
    tier = assessment.tier
    # The sites' rows locked first: two texts from one sender handled at once open one alert.
    sites = await sites_for(session, protocol, written_to, lock=True)
    open_tiers = (await session.execute(select(Alert.site_id, Alert.tier).where(
        Alert.kind == KIND, Alert.sender == sender,
        Alert.status != alerts.RESOLVED))).all()
    reasons = [r.as_dict() for r in assessment.reasons]
    for site in sites:
        if any(site_id == site.id and _RANK.get(t, 0) >= _RANK[tier.value]
               for site_id, t in open_tiers):
            continue
        await alerts.open_alert(
            session, protocol, site_id=site.id, patient=None, kind=KIND, tier=tier, now=now,
            received_at=now, summary=text[:1000], possible_sae=assessment.possible_sae,
            actor=Actor.system("triage"), sender=sender[:64], reasons=reasons)
    return Reply(REPLIES[tier], safety=True)
