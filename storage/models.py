"""The schema. No column anywhere holds a treatment allocation: the system never knows it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.types import UTCDateTime
from trial.delivery import kind_of

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON(),
    }


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tz: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime]


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.id"))  # None: admin of all
    role: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    telegram_reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    # Addresses on channels without a column of their own (WeCom): loaded with the row, so
    # routing (study.recipients) stays a plain function of the row.
    contact_points: Mapped[list[ContactPoint]] = relationship(
        primaryjoin="and_(foreign(ContactPoint.owner_id) == Staff.id, "
                    "ContactPoint.owner_kind == 'staff')",
        viewonly=True, lazy="selectin", order_by="ContactPoint.id")


class Patient(Base):
    __tablename__ = "patients"
    # Tick look-ups by what is due, not by who is enrolled: patients to plan (including those
    # never planned), and the patients of one time zone (their weekly check-in).
    __table_args__ = (Index("ix_patients_planning", "status", "opted_out", "plan_next_at",
                            "planned_through"),
                      Index("ix_patients_tz", "tz", "status"),
                      Index("ix_patients_by_baseline", "status", "opted_out", "baseline"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(32), unique=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    baseline: Mapped[date] = mapped_column(Date, index=True)
    dose_time: Mapped[str] = mapped_column(String(5))  # local HH:MM
    tz: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|paused|withdrawn
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    telegram_reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    sms_reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    # Planning watermark: the last local date whose dose row exists (planning is O(due)).
    planned_through: Mapped[date | None] = mapped_column(Date)
    # When the dose planner must next look at this patient (None: nothing left to plan).
    plan_next_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime]
    # Addresses on channels without a column of their own (WeChat): loaded with the row, so
    # routing (study.recipients) stays a plain function of the row.
    contact_points: Mapped[list[ContactPoint]] = relationship(
        primaryjoin="and_(foreign(ContactPoint.owner_id) == Patient.id, "
                    "ContactPoint.owner_kind == 'patient')",
        viewonly=True, lazy="selectin", order_by="ContactPoint.id")


class ContactPoint(Base):
    """A patient's or staff member's address on a channel without a column of its own (a WeChat
    openid, a WeCom userid): one per owner and channel, one owner per address."""

    __tablename__ = "contact_points"
    __table_args__ = (UniqueConstraint("channel", "address"),
                      UniqueConstraint("owner_kind", "owner_id", "channel"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(8))  # patient|staff
    owner_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    # The owner's last message on this channel (WeChat: free-form replies only within 48 h).
    last_inbound_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class LinkCode(Base):
    """A one-time code binding a Telegram chat to a subject; only its hash is stored."""

    __tablename__ = "link_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class LinkAttempt(Base):
    """A wrong link code from a chat, for the per-hour limit."""

    __tablename__ = "link_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int | None] = mapped_column(BigInteger, index=True)  # Telegram
    # Any other channel: "{channel}:{address}" (a WeChat openid is not a number).
    address: Mapped[str | None] = mapped_column(String(160), index=True)
    at: Mapped[datetime]


class DoseRecord(Base):
    """One scheduled daily dose and where it is in its state machine."""

    __tablename__ = "doses"
    __table_args__ = (UniqueConstraint("patient_id", "local_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    local_date: Mapped[date] = mapped_column(Date)
    due_at: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[str] = mapped_column(String(16), default="scheduled")
    reminded_at: Mapped[datetime | None]
    follow_up_at: Mapped[datetime | None]
    followed_up_at: Mapped[datetime | None]
    snoozes: Mapped[int] = mapped_column(Integer, default=0)
    snoozed_until: Mapped[datetime | None]
    cutoff_at: Mapped[datetime] = mapped_column(index=True)
    answered_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    skip_reason: Mapped[str | None] = mapped_column(Text)
    # A confirmation that came after the cut-off: kept with its real time, the state stays.
    late_answer: Mapped[str | None] = mapped_column(String(16))
    late_answer_at: Mapped[datetime | None]
    hold_for_visit: Mapped[str | None] = mapped_column(String(16))
    # Next instant the planner must look at this dose again (reminder, follow-up, cut-off).
    next_action_at: Mapped[datetime | None] = mapped_column(index=True)


class Visit(Base):
    __tablename__ = "visits"
    # Missed-window detection reads only planned visits near a date.
    __table_args__ = (UniqueConstraint("patient_id", "name"),
                      Index("ix_visits_due", "status", "scheduled_date"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    name: Mapped[str] = mapped_column(String(16))
    target_date: Mapped[date] = mapped_column(Date)
    window_start: Mapped[date] = mapped_column(Date)
    window_end: Mapped[date] = mapped_column(Date, index=True)
    scheduled_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="planned")  # planned|done|missed
    done_date: Mapped[date | None] = mapped_column(Date)
    out_of_window: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped on every move so notices derived from an earlier date are never sent.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    # When the next notice of this visit may go out (UTC), or None when no notice is left: a
    # tick reads only visits whose instant has come, not every visit near a date.
    next_notice_at: Mapped[datetime | None] = mapped_column(index=True)


class SymptomReport(Base):
    __tablename__ = "symptom_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    source: Mapped[str] = mapped_column(String(16))  # free_text|questionnaire|checkin
    raw_text: Mapped[str] = mapped_column(Text)
    parsed: Mapped[dict[str, Any]]
    temperature_c: Mapped[float | None]
    tier: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]]
    possible_sae: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime]
    reviewed_in_digest_at: Mapped[datetime | None]  # listed in a digest (not a review)
    reviewed_at: Mapped[datetime | None]  # a staff member said they reviewed it
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("symptom_reports.id"))
    kind: Mapped[str] = mapped_column(String(24))  # symptom|opt_out|unreachable|missed_visit|...
    tier: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    summary: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime]
    received_at: Mapped[datetime]
    sae_deadline_at: Mapped[datetime | None]
    level: Mapped[int] = mapped_column(Integer, default=0)  # index into the escalation chain
    pages: Mapped[int] = mapped_column(Integer, default=0)
    next_escalation_at: Mapped[datetime | None] = mapped_column(index=True)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    # A page step that reached no site staff (the operational alarm) until acknowledged.
    unreached_at: Mapped[datetime | None] = mapped_column(index=True)
    # The SAE clock: reported to the sponsor (by whom), and the next deadline reminder.
    sae_reported_at: Mapped[datetime | None]
    sae_reported_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    sae_next_reminder_at: Mapped[datetime | None] = mapped_column(index=True)
    # An alert with no patient: who wrote (E.164 phone or Telegram chat id, shown masked) and
    # what the triage found in the text (there is no symptom report without a patient).
    sender: Mapped[str | None] = mapped_column(String(64))
    reasons: Mapped[list[Any] | None] = mapped_column(JSON)


class OnCallRule(Base):
    """One rule of a site's on-call rota (see trial.oncall): a role or a staff member, on
    weekdays and local hours, or over a dated period (a holiday); ended, never deleted."""

    __tablename__ = "oncall_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    role: Mapped[str | None] = mapped_column(String(20))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    weekdays: Mapped[str] = mapped_column(String(7), default="1234567")  # ISO weekdays
    start: Mapped[str] = mapped_column(String(5), default="00:00")  # local HH:MM
    end: Mapped[str] = mapped_column(String(5), default="00:00")  # <= start: next day
    period_from: Mapped[datetime | None]  # a dated override (UTC), else a weekly rule
    period_to: Mapped[datetime | None]
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class AlertEvent(Base):
    __tablename__ = "alert_events"
    __table_args__ = (UniqueConstraint("alert_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)  # 0 opened, then each page/ack/resolve in order
    kind: Mapped[str] = mapped_column(String(16))  # opened|paged|acknowledged|resolved
    level: Mapped[int] = mapped_column(Integer, default=0)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    at: Mapped[datetime]
    detail: Mapped[str] = mapped_column(Text, default="")


class InboundMessage(Base):
    """Every message in, stored before it is acknowledged; (channel, external_id) is unique."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    text: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
    handled_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))


def _kind_of_key(context: Any) -> str:
    return kind_of(context.get_current_parameters()["dedupe_key"])


class OutboundMessage(Base):
    """The outbox: every message out, planned with a unique key, claimed with a lease."""

    __tablename__ = "outbound_messages"
    __table_args__ = (Index("ix_outbox_due", "status", "lane", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    template_id: Mapped[str] = mapped_column(String(64))
    template_version: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8))
    # Exactly what the provider gets: by SMS with the choice line and the site's signature
    # (study.outgoing renders it at queueing; the dispatcher adds nothing).
    body: Mapped[str] = mapped_column(Text)
    # The text before its channel's form, where that differs (an SMS): what a reroute or a copy
    # to another channel renders again (study.outgoing.reroute). None: the body is it.
    plain_text: Mapped[str | None] = mapped_column(Text)
    choices: Mapped[list[Any]]
    image: Mapped[bytes | None]
    lane: Mapped[str] = mapped_column(String(8), default="routine")  # safety|routine
    # What the message is (reply, dose, alert, visit, digest...): the delivery policy reads
    # it (`trial.delivery.screen`), never the key. Unless given, the dedupe key's first part.
    kind: Mapped[str] = mapped_column(String(16), default=_kind_of_key)
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    leased_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    provider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    dose_id: Mapped[int | None] = mapped_column(ForeignKey("doses.id"))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))


class DeliveryEvent(Base):
    """Delivery status history of one outbound message."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbound_messages.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    detail: Mapped[str] = mapped_column(Text, default="")


class ConversationState(Base):
    """Where a patient is in a multi-step exchange (a questionnaire); survives restarts. Kept
    when it ends (ended_at, ended_reason), never deleted; one open per patient."""

    __tablename__ = "conversations"
    __table_args__ = (Index("uq_conversations_open", "patient_id", unique=True,
                            sqlite_where=text("ended_at IS NULL"),
                            postgresql_where=text("ended_at IS NULL")),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    flow: Mapped[str] = mapped_column(String(32))
    step: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict[str, Any]]
    started_at: Mapped[datetime]
    # The tick's timeout look-up; None once ended, so ended rows cost the look-up nothing.
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
    ended_reason: Mapped[str | None] = mapped_column(String(32))


class TickRun(Base):
    """A job run once per key (digests, phase notices): the unique key makes it idempotent."""

    __tablename__ = "tick_runs"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    at: Mapped[datetime]


class AuditEntry(Base):
    """Append-only audit trail. The application only inserts; PostgreSQL refuses the rest."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))  # staff|patient|system|cli
    actor_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # create|update|query|message|...
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    field: Mapped[str | None] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    inbound_id: Mapped[int | None] = mapped_column(Integer)  # the message that caused it


class ProviderToken(Base):
    """A provider's access token (WeChat, WeCom), shared by every worker: one refresh for all."""

    __tablename__ = "provider_tokens"

    name: Mapped[str] = mapped_column(String(160), primary_key=True)  # e.g. "wechat:{app_id}"
    value: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    # A lease: the worker that holds it fetches the token while the others wait for its result.
    refreshing_until: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
