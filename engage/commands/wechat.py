"""`engage wechat menu` (create the Official Account's custom menu) and `engage patient qr
SUBJECT --code CODE` (the parametric QR code a patient scans at the clinic to link: its scene is
their link code). Both talk to the WeChat API with the account's settings and the shared access
token (`bot.channels.wechat.WeChatAPI`)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
from sqlalchemy import select

from bot.channels.wechat import QR_SECONDS, WeChatAPI, WeChatError, qr_image_url
from bot.channels.wechat.inbound import MENU, MENU_NAMES, menu
from bot.channels.wechat.templates import TemplateFileError
from engage.clock import SystemClock
from engage.commands.support import CommandError, emit, now, open_database, refused
from engage.config import Settings
from messages.channel import SendError
from storage.db import Database
from storage.models import LinkCode
from storage.tokens import TokenUnavailableError
from study.changes import find_patient
from study.enrolment import hash_code

T = TypeVar("T")

NOT_CONFIGURED = ("WeChat is not configured: set ENGAGE_WECHAT_APP_ID, "
                  "ENGAGE_WECHAT_APP_SECRET and ENGAGE_WECHAT_TOKEN")
# errcodes worth a hint to the operator.
HINTS = {40164: "add this server's outgoing IP address to the account's IP whitelist",
         61004: "add this server's outgoing IP address to the account's IP whitelist",
         48001: "the account is not allowed this API (a verified service account is needed)",
         40013: "ENGAGE_WECHAT_APP_ID is not the account's AppID",
         40125: "ENGAGE_WECHAT_APP_SECRET is not the account's AppSecret"}


def register(sub: argparse._SubParsersAction) -> None:
    wechat = sub.add_parser("wechat", help="the WeChat Official Account (patients)")
    group = wechat.add_subparsers(dest="wechat_command", required=True)
    created = group.add_parser("menu", help="create the account's custom menu ("
                               + ", ".join(MENU_NAMES.values()) + ")")
    created.add_argument("--json", action="store_true", help="print JSON")
    created.set_defaults(handler=_menu)


def register_qr(group: argparse._SubParsersAction) -> None:
    """`engage patient qr SUBJECT --code CODE`, in the patient group."""
    qr = group.add_parser(
        "qr", help="the WeChat QR code a patient scans to link (its scene is the link code)")
    qr.add_argument("subject", metavar="SUBJECT")
    qr.add_argument("--json", action="store_true", help="print JSON")
    qr.set_defaults(handler=_qr)
    qr.add_argument("--code", required=True,
                    help="the patient's open link code, as printed by enroll or relink (codes "
                         "are stored hashed; `engage patient relink` prints a new one)")


@asynccontextmanager
async def _account(settings: Settings, database: Database) -> AsyncIterator[WeChatAPI]:
    if not settings.wechat_enabled:
        raise CommandError(NOT_CONFIGURED)
    # Imported here: engage.runtime brings aiogram (about 4 s of imports), and the command tree
    # imports every command module, so at the top every `engage` command would pay for it.
    from engage.runtime import wechat_from_settings
    try:
        wechat = wechat_from_settings(settings, database, SystemClock())
    except TemplateFileError as exc:
        raise CommandError(f"ENGAGE_WECHAT_TEMPLATES: {exc}") from None
    assert wechat is not None
    try:
        yield wechat.channel.api
    finally:
        await wechat.close()


async def _ask(api: WeChatAPI, call: Awaitable[T]) -> T:
    """One API call; WeChat's refusal or silence as one error line."""
    try:
        return await call
    except WeChatError as exc:
        hint = HINTS.get(exc.errcode)
        raise CommandError(f"WeChat refused it: errcode {exc.errcode} {exc.errmsg}"
                           + (f" ({hint})" if hint else ""), status=1) from None
    except (TokenUnavailableError, SendError, aiohttp.ClientError, TimeoutError) as exc:
        raise CommandError(f"cannot use the WeChat API at {api.api_url}: {exc or type(exc)}",
                           status=1) from None


async def _open_code(database: Database, subject: str, code: str,
                     moment: datetime) -> tuple[str, datetime]:
    """The patient's subject id and when their open link code `code` expires."""
    async with database.read() as session:
        with refused():
            patient = await find_patient(session, subject)
        if patient.status == "withdrawn":
            raise CommandError(f"{patient.subject_id} is withdrawn: no QR code")
        expires = (await session.execute(select(LinkCode.expires_at).where(
            LinkCode.patient_id == patient.id, LinkCode.code_hash == hash_code(code),
            LinkCode.used_at.is_(None), LinkCode.expires_at > moment))).scalar_one_or_none()
        if expires is None:
            raise CommandError(f"{patient.subject_id} has no open link code {code.strip()} "
                               "(wrong, used or expired): `engage patient relink "
                               f"{patient.subject_id} --reason ...` prints a new one")
        return patient.subject_id, expires.replace(tzinfo=expires.tzinfo or UTC)


async def _qr(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.wechat_enabled:
        raise CommandError(NOT_CONFIGURED)
    moment = now()
    async with open_database(settings) as database:
        subject, expires = await _open_code(database, args.subject, args.code, moment)
        # The QR code lives as long as the code (WeChat's temporary codes: 30 days at most).
        seconds = max(60, min(QR_SECONDS, int((expires - moment).total_seconds())))
        async with _account(settings, database) as api:
            answer = await _ask(api, api.create_qr(args.code.strip().upper(),
                                                   seconds=seconds))
    ticket = str(answer["ticket"])
    lifetime = int(answer.get("expire_seconds") or seconds)
    data: dict[str, Any] = {
        "subject_id": subject, "ticket": ticket, "url": answer.get("url"),
        "image_url": qr_image_url(ticket), "expire_seconds": lifetime,
        "expires_at": (moment + timedelta(seconds=lifetime)).isoformat()}
    text = (f"{subject}: WeChat QR code (scanning it follows the account and links the "
            f"patient), valid until {data['expires_at']}\n"
            f"  image to print or show: {data['image_url']}\n"
            f"  QR content: {data['url']}\n"
            f"  ticket: {ticket}")
    emit(data, args.json, text)
    return 0


async def _menu(args: argparse.Namespace, settings: Settings) -> int:
    body = menu()
    async with open_database(settings) as database, _account(settings, database) as api:
        await _ask(api, api.create_menu(body))
    names = [f"{b['name']} ({b['key']}: {MENU[b['key']]})" for b in body["button"]]
    emit({"menu": body}, args.json, "the custom menu is created: " + ", ".join(names))
    return 0
