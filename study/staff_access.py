"""Who on the staff may see and do what, at which site; and the audit of every staff query.

The one place for these rules: coordinators, investigators and PIs see and act on their own
site; a monitor sees its site read-only; an admin sees and acts on every site. Patients and
strangers are no staff at all. A patient a staff member may not see is "not found", exactly
like one that does not exist, and the attempt is audited.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage import audit
from storage.audit import Actor
from storage.models import Patient, Staff

SITE_ROLES = frozenset({"coordinator", "investigator", "pi"})  # see and act on their own site
READ_ONLY_ROLES = frozenset({"monitor"})  # see their own site, change nothing
# The medical monitor (optional) is paged with the admins at the top of the ladder.
ALL_SITES_ROLES = frozenset({"admin", "medical_monitor"})
# Who receives the site's daily digest (and is paged by the escalation chain).
DIGEST_ROLES = SITE_ROLES


def is_staff(staff: Staff | None) -> bool:
    """Whether this is an active staff member with a known role (anyone else is a stranger)."""
    return (staff is not None and staff.active
            and staff.role in SITE_ROLES | READ_ONLY_ROLES | ALL_SITES_ROLES)


def sees_all_sites(staff: Staff) -> bool:
    """Whether the staff member's view spans every site."""
    return is_staff(staff) and staff.role in ALL_SITES_ROLES


def can_view(staff: Staff, site_id: str) -> bool:
    """Whether the staff member may read patient data of that site."""
    if not is_staff(staff):
        return False
    return staff.role in ALL_SITES_ROLES or staff.site_id == site_id


def can_act(staff: Staff, site_id: str) -> bool:
    """Whether the staff member may change things at that site (acknowledge, resolve, move)."""
    if not is_staff(staff) or staff.role in READ_ONLY_ROLES:
        return False
    return staff.role in ALL_SITES_ROLES or staff.site_id == site_id


def can_acknowledge(staff: Staff, site_id: str) -> bool:
    """Whether the staff member may acknowledge or resolve an alert of that site."""
    return can_act(staff, site_id)


def site_scope(staff: Staff, column: ColumnElement[str] | InstrumentedAttribute[str],
               ) -> ColumnElement[bool]:
    """A WHERE clause keeping rows of the sites this staff member may see."""
    if sees_all_sites(staff):
        return true()
    return column == (staff.site_id or "")


async def active_staff(session: AsyncSession, telegram_id: int) -> Staff | None:
    """The active staff member writing from this Telegram account, or None (a stranger)."""
    staff = (await session.execute(
        select(Staff).where(Staff.telegram_id == telegram_id))).scalar_one_or_none()
    return staff if is_staff(staff) else None


async def active_staff_by_phone(session: AsyncSession, phone: str) -> Staff | None:
    """The active staff member whose registered phone this is, or None (a stranger)."""
    candidates = (await session.execute(select(Staff).where(
        Staff.phone == phone, Staff.active.is_(True)).order_by(Staff.id))).scalars().all()
    return next((s for s in candidates if is_staff(s)), None)


def audit_query(session: AsyncSession, staff: Staff, *, command: str, entity: str,
                entity_id: str, now: datetime, refused: str | None = None) -> None:
    """Record that a staff member looked (or tried to look) at patient data."""
    audit.record(session, at=now, actor=Actor.staff(staff.id), action="query", entity=entity,
                 entity_id=entity_id[:64], field=command, new=f"role={staff.role}",
                 reason=f"refused: {refused}" if refused else None)


async def find_patient(session: AsyncSession, staff: Staff, subject_id: str, *, command: str,
                       now: datetime) -> Patient | None:
    """The patient if this staff member may see them, else None; audited either way."""
    wanted = subject_id.strip()
    patient = (await session.execute(select(Patient).where(
        Patient.subject_id == wanted))).scalar_one_or_none() if wanted else None
    if patient is None:
        audit_query(session, staff, command=command, entity="patients", entity_id=wanted,
                    now=now, refused="no such subject")
        return None
    if not can_view(staff, patient.site_id):
        audit_query(session, staff, command=command, entity="patients", entity_id=wanted,
                    now=now, refused=f"subject of site {patient.site_id}, outside the scope")
        return None
    audit_query(session, staff, command=command, entity="patients", entity_id=wanted, now=now)
    return patient


def check_site(session: AsyncSession, staff: Staff, site_id: str, *, command: str,
               now: datetime) -> bool:
    """Whether the staff member may see that site's data; the look (or attempt) is audited."""
    allowed = can_view(staff, site_id)
    audit_query(session, staff, command=command, entity="sites", entity_id=site_id, now=now,
                refused=None if allowed else "site outside the scope")
    return allowed
