"""SMS end to end: the real twilio client against the fake Twilio REST API on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.channels.twilio import SmsChannel
from fakes.servers import ACCOUNT, AUTH_TOKEN, SERVICE
from fakes.twilio_api import FakeTwilioAPI, SmsFailure
from messages.channel import Choice, OutgoingMessage, PermanentSendError, TransientSendError
from messages.sms import render

TO = "+8613800000001"
CALLBACK = "https://engage.example.org/twilio/status"


@pytest.fixture
async def channel(fake_twilio: FakeTwilioAPI) -> AsyncIterator[SmsChannel]:
    sms = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN, api_url=fake_twilio.base_url,
                     status_callback=CALLBACK, messaging_service_sid=SERVICE,
                     validity_seconds=14400, timeout=0.5)
    yield sms
    await sms.close()


REMINDER = (Choice("Taken", "dose:taken:5", "1"), Choice("Not taken", "dose:missed:5", "2"),
            Choice("Snooze", "dose:snooze:5", "3"),
            Choice("Report a symptom", "report:start", ""))  # a Telegram button only


async def test_a_reminder_goes_with_numbered_words_callback_and_validity(
        channel: SmsChannel, fake_twilio: FakeTwilioAPI) -> None:
    # The whole text as study.outgoing queued it: the channel sends it as it is.
    text = render("Time for your dose.", REMINDER, "en", "PUMCH Follow-up")
    result = await channel.send(OutgoingMessage(17, TO, text, REMINDER, language="en"))
    (request,) = fake_twilio.sent_to(TO)
    assert request.auth == (ACCOUNT, AUTH_TOKEN)
    assert request.params["MessagingServiceSid"] == SERVICE
    assert "From" not in request.params
    # The signature comes last, after the choice line (issue 16).
    assert request.params["Body"] == ("Time for your dose.\n"
                                      "Reply 1 Taken, 2 Not taken, 3 Snooze\nPUMCH Follow-up")
    assert request.params["StatusCallback"] == f"{CALLBACK}?message_id=17"
    assert request.params["ValidityPeriod"] == "14400"
    assert result.provider_id == request.sid
    assert result.provider_id.startswith("SM")


def test_chinese_choices_are_chinese_labels_and_the_signature_comes_last() -> None:
    labels = (Choice("已服", "dose:taken:5", "1"), Choice("未服", "dose:missed:5", "2"),
              Choice("稍后提醒", "dose:snooze:5", "3"), Choice("报告症状", "report:start", ""))
    body = render("请服药。", labels, "zh", "协和医院随访中心")
    assert body == "请服药。\n回复：1 已服，2 未服，3 稍后提醒【协和医院随访中心】"
    # A word choice (a catalogue id) is printed alone, in the reader's language.
    language = (Choice("中文", "lang:zh", "chat.language_zh_word"),
                Choice("English", "lang:en", "chat.language_en_word"))
    assert render("请选择语言。", language, "zh").endswith("回复：中文，英文")
    assert render("Choose.", language, "en").endswith("Reply Chinese, English")


async def test_sender_number_instead_of_a_messaging_service(
        fake_twilio: FakeTwilioAPI) -> None:
    sms = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN, api_url=fake_twilio.base_url,
                     status_callback=CALLBACK, sender="+15005550006")
    try:
        await sms.send(OutgoingMessage(1, TO, "hi"))
    finally:
        await sms.close()
    assert fake_twilio.sent_to(TO)[0].params["From"] == "+15005550006"


@pytest.mark.parametrize(("failure", "kind", "flags"), [
    (SmsFailure(400, 21610), PermanentSendError, {"opted_out": True, "unreachable": True}),
    (SmsFailure(400, 21211), PermanentSendError, {"opted_out": False, "unreachable": True}),
    (SmsFailure(400, 21614), PermanentSendError, {"unreachable": True}),
    (SmsFailure(429, 20429), TransientSendError, {"maybe_sent": False}),
    (SmsFailure(500, None), TransientSendError, {"maybe_sent": False}),
    (SmsFailure(503, 20500), TransientSendError, {}),
])
async def test_twilio_errors_map_to_the_channel_contract(
        channel: SmsChannel, fake_twilio: FakeTwilioAPI, failure: SmsFailure,
        kind: type[Exception], flags: dict[str, bool]) -> None:
    fake_twilio.fail_number(TO, failure)
    with pytest.raises(kind) as raised:
        await channel.send(OutgoingMessage(1, TO, "hi"))
    for name, value in flags.items():
        assert getattr(raised.value, name) is value


async def test_a_timeout_after_the_request_was_sent_may_have_been_sent(
        channel: SmsChannel, fake_twilio: FakeTwilioAPI) -> None:
    fake_twilio.fail_number(TO, SmsFailure(status=201, delay=2.0))
    with pytest.raises(TransientSendError) as raised:
        await channel.send(OutgoingMessage(1, TO, "hi"))
    assert raised.value.maybe_sent is True


async def test_an_unreachable_api_was_not_sent() -> None:
    sms = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN, api_url="http://127.0.0.1:9",
                     status_callback=CALLBACK, sender="+15005550006", timeout=2)
    try:
        with pytest.raises(TransientSendError) as raised:
            await sms.send(OutgoingMessage(1, TO, "hi"))
    finally:
        await sms.close()
    assert raised.value.maybe_sent is False
