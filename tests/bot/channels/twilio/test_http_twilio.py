"""Twilio webhooks on our HTTP server: signatures, replays, size limit, status callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.channels.twilio import SmsChannel
from bot.channels.twilio.inbound import TwilioInbound
from bot.conversation import Conversation
from bot.http import Server
from engage.clock import SimulatedClock
from fakes.servers import ACCOUNT, AUTH_TOKEN, SERVICE, outbox_sender
from fakes.twilio_api import FakeTwilioAPI
from fakes.webhooks import PUBLIC_URL, http_client, post_signed
from scheduler.doses import plan_doses
from storage.db import Database
from storage.models import DeliveryEvent, DoseRecord, InboundMessage, OutboundMessage, Patient
from tests.factories import add_site, enrol
from trial.protocol import Protocol

PHONE = "+8613800000001"


def server(db: Database, protocol: Protocol, clock: SimulatedClock) -> Server:
    return Server(db=db, routes=TwilioInbound(Conversation(db, protocol, clock), db, clock,
                                              PUBLIC_URL, AUTH_TOKEN).routes())


def inbound(body: str, sid: str = "SM" + "a" * 32, **extra: str) -> dict[str, str]:
    return {"MessageSid": sid, "AccountSid": ACCOUNT, "From": PHONE, "To": "+15005550006",
            "Body": body, "NumMedia": "0", **extra}


async def count(db: Database, model: type) -> int:
    async with db.read() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


@asynccontextmanager
async def sms_with_callbacks(db: Database, protocol: Protocol, clock: SimulatedClock,
                             fake_twilio: FakeTwilioAPI
                             ) -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """An enrolled patient's HELP answered by SMS through the real Twilio client; yields
    `status(word, token=AUTH_TOKEN)`, which posts a signed status callback for that SMS and
    returns the HTTP status."""
    await add_site(db, clock.now())
    await enrol(db, protocol, clock.now(), phone=PHONE)
    async with http_client(server(db, protocol, clock)) as client:
        await post_signed(client, "/twilio/sms", inbound("HELP"), AUTH_TOKEN)
        sms = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN,
                         api_url=fake_twilio.base_url,
                         status_callback=f"{PUBLIC_URL}/twilio/status",
                         messaging_service_sid=SERVICE)
        try:
            await outbox_sender(db, protocol, {"sms": sms}, clock).run_once()
        finally:
            await sms.close()
        (sent,) = fake_twilio.sent_to(PHONE)
        path = sent.params["StatusCallback"].removeprefix(PUBLIC_URL)

        async def status(value: str, token: str = AUTH_TOKEN) -> int:
            params = {"MessageSid": sent.sid or "", "MessageStatus": value,
                      "AccountSid": ACCOUNT}
            return (await post_signed(client, path, params, token)).status

        yield status


async def test_a_signed_taken_by_sms_records_the_dose_and_the_reply_goes_by_twilio(
        db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_twilio: FakeTwilioAPI) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now(), phone=PHONE)
    await plan_doses(db, protocol, clock.now())
    clock.advance(timedelta(minutes=2))
    async with http_client(server(db, protocol, clock)) as client:
        response = await post_signed(client, "/twilio/sms", inbound("TAKEN"), AUTH_TOKEN)
        assert response.status == 200
        assert "<Response" in await response.text()
    async with db.read() as session:
        doses = (await session.execute(select(DoseRecord.state).where(
            DoseRecord.patient_id == enrolled.patient_id))).scalars().all()
    assert "taken" in doses
    sms = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN, api_url=fake_twilio.base_url,
                     status_callback=f"{PUBLIC_URL}/twilio/status",
                     messaging_service_sid=SERVICE)
    try:
        assert await outbox_sender(db, protocol, {"sms": sms}, clock).run_once() >= 1
    finally:
        await sms.close()
    async with db.read() as session:
        reply = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key.like("reply:%")))).scalar_one()
    (sent,) = [r for r in fake_twilio.sent_to(PHONE) if r.sid == reply.provider_id]
    assert reply.template_id.startswith("dose.")
    assert reply.body in sent.params["Body"]


@pytest.mark.parametrize("forgery", ["missing", "forged", "tampered", "other_url", "host"])
async def test_bad_signatures_get_403_and_change_nothing(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, forgery: str) -> None:
    await add_site(sqlite_db, clock.now())
    await enrol(sqlite_db, protocol, clock.now(), phone=PHONE)
    params = inbound("STOP")
    async with http_client(server(sqlite_db, protocol, clock)) as client:
        if forgery == "missing":
            response = await client.post("/twilio/sms", data=params)
        elif forgery == "forged":
            response = await post_signed(client, "/twilio/sms", params, "not-the-auth-token")
        elif forgery == "tampered":  # signed for another body, replayed with this one
            response = await post_signed(client, "/twilio/sms", params, AUTH_TOKEN,
                                         signed_params=inbound("HELLO"))
        elif forgery == "other_url":
            response = await post_signed(client, "/twilio/sms", params, AUTH_TOKEN,
                                         signed_url="https://evil.example.com/twilio/sms")
        else:  # signed for the URL this request really hit, not the public one
            response = await post_signed(client, "/twilio/sms", params, AUTH_TOKEN,
                                         signed_url=str(client.make_url("/twilio/sms")))
        assert response.status == 403
    assert await count(sqlite_db, InboundMessage) == 0
    async with sqlite_db.read() as session:
        assert (await session.execute(select(Patient.opted_out))).scalar_one() is False


async def test_a_message_sid_posted_ten_times_at_once_is_stored_and_answered_once(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await add_site(db, clock.now())
    await enrol(db, protocol, clock.now(), phone=PHONE)
    async with http_client(server(db, protocol, clock)) as client:
        responses = await asyncio.gather(*(
            post_signed(client, "/twilio/sms", inbound("HELP"), AUTH_TOKEN) for _ in range(10)))
        assert [r.status for r in responses] == [200] * 10
    assert await count(db, InboundMessage) == 1
    assert await count(db, OutboundMessage) == 1


async def test_an_oversized_body_is_refused(sqlite_db: Database, protocol: Protocol,
                                            clock: SimulatedClock) -> None:
    async with http_client(server(sqlite_db, protocol, clock), max_body=4096) as client:
        response = await post_signed(client, "/twilio/sms", inbound("x" * 10_000), AUTH_TOKEN)
        assert response.status == 413
    assert await count(sqlite_db, InboundMessage) == 0


async def test_opt_out_type_from_advanced_opt_out(sqlite_db: Database, protocol: Protocol,
                                                  clock: SimulatedClock) -> None:
    await add_site(sqlite_db, clock.now())
    await enrol(sqlite_db, protocol, clock.now(), phone=PHONE)
    async with http_client(server(sqlite_db, protocol, clock)) as client:
        response = await post_signed(client, "/twilio/sms",
                                     inbound("arrêt", OptOutType="STOP"), AUTH_TOKEN)
        assert response.status == 200
    async with sqlite_db.read() as session:
        assert (await session.execute(select(Patient.opted_out))).scalar_one() is True
    assert await count(sqlite_db, OutboundMessage) == 0  # Twilio answered; we only alert


async def test_status_callbacks_move_forward_only_and_need_a_signature(
        db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_twilio: FakeTwilioAPI) -> None:
    async with sms_with_callbacks(db, protocol, clock, fake_twilio) as status:
        assert await status("delivered", token="forged") == 403
        assert await status("delivered") == 204
        assert await status("sent") == 204  # late and out of order: ignored
        assert await status("failed") == 204  # cannot undo a delivery
    async with db.read() as session:
        row = (await session.execute(select(OutboundMessage))).scalar_one()
        events = (await session.execute(select(func.count()).select_from(DeliveryEvent).where(
            DeliveryEvent.message_id == row.id))).scalar_one()
    assert row.status == "delivered"
    assert events >= 3


async def test_a_status_callback_saying_21610_opts_the_patient_out(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await add_site(sqlite_db, clock.now())
    enrolled = await enrol(sqlite_db, protocol, clock.now(), phone=PHONE)
    async with sqlite_db.write() as session:
        session.add(OutboundMessage(
            dedupe_key="x", patient_id=enrolled.patient_id, channel="sms", address=PHONE,
            template_id="dose.reminder", template_version="v", language="en", body="b",
            choices=[], lane="routine", due_at=clock.now(), status="sent", attempts=1,
            provider_id="SM" + "f" * 32, created_at=clock.now()))
    async with http_client(server(sqlite_db, protocol, clock)) as client:
        response = await post_signed(client, "/twilio/status", {
            "MessageSid": "SM" + "f" * 32, "MessageStatus": "undelivered",
            "ErrorCode": "21610"}, AUTH_TOKEN)
        assert response.status == 204
    async with sqlite_db.read() as session:
        patient = await session.get(Patient, enrolled.patient_id)
    assert patient is not None
    assert patient.opted_out is True


async def test_a_safety_sms_reported_undeliverable_goes_again_by_telegram(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    # The patient wrote by SMS, so the safety reply went by SMS; the carrier later says the
    # number cannot take SMS (30006). As when a send is refused: SMS marked unreachable, the
    # coordinators told, and the safety reply sent again by the patient's other route.
    await add_site(sqlite_db, clock.now())
    enrolled = await enrol(sqlite_db, protocol, clock.now(), phone=PHONE)
    sid = "SM" + "e" * 32
    async with sqlite_db.write() as session:
        patient = await session.get(Patient, enrolled.patient_id)
        assert patient is not None
        patient.telegram_id = 4242
        session.add(OutboundMessage(
            dedupe_key="reply:7:0", patient_id=enrolled.patient_id, channel="sms",
            address=PHONE, template_id="report.urgent_ack", template_version="v", language="en",
            body="Please call the study team now.", choices=[], lane="safety",
            due_at=clock.now(), status="sent", attempts=1, provider_id=sid,
            created_at=clock.now()))
    async with http_client(server(sqlite_db, protocol, clock)) as client:
        response = await post_signed(client, "/twilio/status", {
            "MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30006"}, AUTH_TOKEN)
        assert response.status == 204
    async with sqlite_db.read() as session:
        patient = await session.get(Patient, enrolled.patient_id)
        again = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key == "reply:7:0:via:telegram"))).scalar_one()
    assert patient is not None
    assert patient.sms_reachable is False
    assert (again.channel, again.address, again.lane, again.body) == (
        "telegram", "4242", "safety", "Please call the study team now.")


async def test_twilio_status_words_are_read_into_the_outboxs_states(
        db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_twilio: FakeTwilioAPI) -> None:
    """Past the Twilio adapter nothing reads Twilio's words: "accepted" is sent, "canceled" is
    a message never sent (cancelled, nothing follows), a word it does not know changes
    nothing and is noted."""
    async def state() -> str:
        async with db.read() as session:
            return (await session.execute(select(OutboundMessage.status))).scalar_one()

    async with sms_with_callbacks(db, protocol, clock, fake_twilio) as status:
        for word, expected in [("Accepted", "sent"), ("scheduled", "sent"), ("wat", "sent"),
                               ("canceled", "cancelled")]:
            assert await status(word) == 204
            assert await state() == expected, word
    async with db.read() as session:
        details = list((await session.execute(select(DeliveryEvent.detail).order_by(
            DeliveryEvent.id))).scalars())
        patient = (await session.execute(select(Patient))).scalar_one()
    assert any(d.startswith("unrecognised status 'wat'") for d in details)
    assert patient.status == "active"
    assert patient.sms_reachable
