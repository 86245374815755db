"""Realistic values for every placeholder name, used to measure rendered SMS length.

One entry per placeholder name across all domains: when you add a `{placeholder}` to a
patient-facing message, add it here with a value as long as real ones usually get (a long
hospital name, a two-digit count, a full date), in both languages. The SMS check fails on a
patient-facing placeholder without a sample (staff messages have no length budget, so a stand-in
is used for theirs).
"""

from __future__ import annotations

# name -> one value for every language, or {"zh": ..., "en": ...}
SAMPLES: dict[str, str | dict[str, str]] = {
    # people and places (staff see subject ids only, never names)
    "subject": "S03-0127",
    "subject_id": "S03-0127",
    "patient": "S03-0127",
    "site": {"zh": "北京协和医院", "en": "Peking Union Medical College Hospital"},
    "site_name": {"zh": "北京协和医院", "en": "Peking Union Medical College Hospital"},
    "site_id": "S03",
    "staff": {"zh": "王医生", "en": "Dr Wang"},
    "staff_name": {"zh": "王医生", "en": "Dr Wang"},
    "name": {"zh": "王医生", "en": "Dr Wang"},
    "role": {"zh": "研究协调员", "en": "coordinator"},
    "phone": "+86 10 6915 6114",
    "contact": "+86 10 6915 6114",
    "signature": {"zh": "协和医院随访中心", "en": "PUMCH Follow-up"},
    # dose
    "dose_label": {"zh": "研究用药", "en": "study medication"},
    "label": {"zh": "研究用药", "en": "study medication"},
    "capsules": "3",
    "dose_time": "08:30",
    "latest": "20:30",
    "time": "08:30",
    "place": {"zh": "门诊楼三层第二诊区", "en": "Outpatient building, 3rd floor, area 2"},
    "minutes": "30",
    "hours": "12",
    "snooze_minutes": "30",
    "snoozes": "2",
    # media (study/media.py): the kinds a patient sent
    "kinds": {"zh": "照片、语音", "en": "video message, voice note"},
    # dates and visits
    "date": {"zh": "10月12日（周三）", "en": "Wed 12 Oct"},
    "day": {"zh": "10月12日", "en": "12 Oct"},
    "weekday": {"zh": "周三", "en": "Wednesday"},
    "days": "3",
    "week": "24",
    "visit": "W24",
    "visit_name": "W24",
    "names": "W4, W8, W12, W16, W20, W24",
    "old": "2025-10-12",
    "new": "2025-10-15",
    "start": "2025-10-05",
    "end": "2025-10-19",
    "deadline": "2025-10-13 09:30 UTC",
    "when": "2025-10-12 09:30",
    "received": "2025-10-12 09:30",
    "local_date": "2025-10-12",
    "window_end": "2025-10-19",
    "age": {"zh": "3小时", "en": "3 h"},
    # reports, questionnaires, alerts
    "temperature": "38.5",
    "tier": {"zh": "当天处理", "en": "same day"},
    "summary": {"zh": "发烧38.5度，咳嗽两天", "en": "fever 38.5, cough for two days"},
    "text": {"zh": "发烧38.5度，咳嗽两天", "en": "fever 38.5, cough for two days"},
    "report": {"zh": "发烧38.5度，咳嗽两天", "en": "fever 38.5, cough for two days"},
    "alert": "1234",
    "alert_id": "1234",
    "id": "1234",
    "status": {"zh": "已确认", "en": "acknowledged"},
    "flags": {"zh": "7天依从率低于80%，连续2天未回复", "en": "adherence below 80% over 7 days, "
              "2 days in a row unanswered"},
    "report_id": "1234",
    "step": "2",
    "steps": "5",
    "question": "2",
    "answer": {"zh": "是", "en": "yes"},
    "level": "2",
    # counts and figures
    "count": "12",
    "max": "2",
    "patients": "48",
    "n": "12",
    "total": "28",
    "taken": "25",
    "scheduled": "28",
    "missed": "2",
    "percent": "89",
    "adherence": "89%",
    "page": "2",
    "pages": "5",
    # generic
    "code": "K7M2Q9",
    "link_code": "K7M2Q9",
    "command": "/help",
    "commands": "/alerts /ack /resolve /patients /adherence /move /done /language /help",
    "channel": {"zh": "短信", "en": "SMS"},
    "value": "2025-13-40",
    "options": {"zh": "1 已服，2 未服，3 稍后提醒", "en": "1 Taken, 2 Not taken, 3 Snooze"},
    "language": {"zh": "中文", "en": "English"},
    "reason": {"zh": "患者出差", "en": "patient travelling"},
}


def sample(name: str, language: str) -> str | None:
    """The sample value of a placeholder in a language, or None if nobody declared one."""
    value = SAMPLES.get(name)
    if isinstance(value, dict):
        return value.get(language)
    return value
