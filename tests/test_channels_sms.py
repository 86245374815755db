"""SMS end to end: the real twilio client against the fake Twilio REST API on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.channels import Choice, OutgoingMessage, PermanentSendError, TransientSendError
from bot.sms import SmsChannel, render
from tests.fakes.servers import ACCOUNT, AUTH_TOKEN, SERVICE
from tests.fakes.twilio_api import FakeTwilioAPI, SmsFailure

TO = "+8613800000001"
CALLBACK = "https://engage.example.org/twilio/status"


@pytest.fixture
async def channel(fake_twilio: FakeTwilioAPI) -> AsyncIterator[SmsChannel]:
    sms = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN, api_url=fake_twilio.base_url,
                     status_callback=CALLBACK, messaging_service_sid=SERVICE,
                     validity_seconds=14400, timeout=0.5)
    yield sms
    await sms.close()


REMINDER = (Choice("Taken", "dose:taken:5", "TAKEN"), Choice("Skip", "dose:skip:5", "SKIP"),
            Choice("Snooze", "dose:snooze:5", "SNOOZE"),
            Choice("Report", "report:start", "REPORT"))


async def test_a_reminder_goes_with_numbered_words_callback_and_validity(
        channel: SmsChannel, fake_twilio: FakeTwilioAPI) -> None:
    result = await channel.send(OutgoingMessage(17, TO, "Time for your dose.", REMINDER,
                                                language="en"))
    (request,) = fake_twilio.sent_to(TO)
    assert request.auth == (ACCOUNT, AUTH_TOKEN)
    assert request.params["MessagingServiceSid"] == SERVICE
    assert "From" not in request.params
    assert request.params["Body"] == ("Time for your dose.\n"
                                      "Reply 1 TAKEN, 2 SKIP, 3 SNOOZE, REPORT")
    assert request.params["StatusCallback"] == f"{CALLBACK}?message_id=17"
    assert request.params["ValidityPeriod"] == "14400"
    assert result.provider_id == request.sid
    assert result.provider_id.startswith("SM")


def test_chinese_choices_and_the_numbers_we_understand() -> None:
    body = render("请服药。", REMINDER[:3], "zh")
    assert body == "请服药。\n回复1 TAKEN，2 SKIP，3 SNOOZE"
    # Choices that are not dose keywords are numbered by position.
    assert render("Q", (Choice("Yes", "q:1:yes", "YES"), Choice("No", "q:1:no", "NO")),
                  "en").endswith("Reply 1 YES, 2 NO")


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
