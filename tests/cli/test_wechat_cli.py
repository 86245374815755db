"""`engage patient qr SUBJECT --code CODE` and `engage wechat menu` through the real CLI against
the fake WeChat API (issue 20): the QR code's scene is the patient's open link code, its ticket
and image printed (or as JSON); a wrong, used or expired code, or WeChat not configured, is one
clear error line; the custom menu's three buttons reach the API as wechatpy's client would send
them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from bot.channels.wechat.inbound import menu
from fakes import wechat as fake
from fakes.threaded import serving
from tests.cli.support import run_cli, setup_site


@pytest.fixture(autouse=True)
def _database(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENGAGE_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[fake.FakeWeChatAPI]:
    """The fake WeChat API (in a thread of its own) and the account's settings pointing at it."""
    with serving(fake.FakeWeChatAPI()) as running:
        for key, value in (("APP_ID", fake.APP_ID), ("APP_SECRET", fake.APP_SECRET),
                           ("TOKEN", fake.TOKEN), ("API_URL", running.base_url)):
            monkeypatch.setenv(f"ENGAGE_WECHAT_{key}", value)
        yield running


def _enrol(capsys: pytest.CaptureFixture[str]) -> str:
    setup_site(capsys)
    outcome = run_cli(capsys, "patient", "enroll", "BJ01-001", "--site", "BJ01", "--baseline",
                      "2026-03-02", "--dose-time", "8:00", "--language", "zh", "--json")
    assert outcome.status == 0, outcome.err
    return str(json.loads(outcome.out)["link_code"])


def test_the_qr_code_carries_the_open_link_code_as_its_scene(
        capsys: pytest.CaptureFixture[str], api: fake.FakeWeChatAPI) -> None:
    code = _enrol(capsys)
    outcome = run_cli(capsys, "patient", "qr", "BJ01-001", "--code", code, "--json")
    assert outcome.status == 0, outcome.err
    data = json.loads(outcome.out)
    (made,) = api.qr
    assert made["scene"] == code
    # As long as the link code lives (72 h by the bundled protocol), at most WeChat's 30 days.
    assert 71 * 3600 < made["expire_seconds"] <= 72 * 3600
    assert data["subject_id"] == "BJ01-001"
    assert data["ticket"] == made["ticket"]
    assert data["url"].startswith("http://weixin.qq.com/q/")
    assert data["image_url"].startswith("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=")
    assert api.token_calls() == 1

    outcome = run_cli(capsys, "patient", "qr", "BJ01-001", "--code", code.lower())
    assert outcome.status == 0, outcome.err
    assert "BJ01-001: WeChat QR code" in outcome.out
    assert f"ticket: {api.qr[1]['ticket']}" in outcome.out
    assert api.token_calls() == 1  # the token stored by the first run is used again


def test_no_qr_code_without_an_open_link_code_or_without_wechat(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        api: fake.FakeWeChatAPI) -> None:
    code = _enrol(capsys)
    outcome = run_cli(capsys, "patient", "qr", "BJ01-001", "--code", "WRONG123")
    assert outcome.status == 2
    assert outcome.err.startswith("error: BJ01-001 has no open link code WRONG123 (wrong, used "
                                  "or expired): `engage patient relink BJ01-001")
    outcome = run_cli(capsys, "patient", "qr", "BJ01-999", "--code", code)
    assert outcome.status == 2
    assert "no patient BJ01-999" in outcome.err
    # The code of another patient is not this one's.
    other = run_cli(capsys, "patient", "enroll", "BJ01-002", "--site", "BJ01", "--baseline",
                    "2026-03-02", "--dose-time", "8:00", "--language", "zh", "--json")
    outcome = run_cli(capsys, "patient", "qr", "BJ01-001", "--code",
                      json.loads(other.out)["link_code"])
    assert outcome.status == 2
    assert "has no open link code" in outcome.err
    assert api.qr == []

    for key in ("APP_ID", "APP_SECRET", "TOKEN"):
        monkeypatch.delenv(f"ENGAGE_WECHAT_{key}")
    outcome = run_cli(capsys, "patient", "qr", "BJ01-001", "--code", code)
    assert outcome.status == 2
    assert outcome.err == ("error: WeChat is not configured: set ENGAGE_WECHAT_APP_ID, "
                           "ENGAGE_WECHAT_APP_SECRET and ENGAGE_WECHAT_TOKEN\n")
    outcome = run_cli(capsys, "wechat", "menu")
    assert outcome.status == 2
    assert "WeChat is not configured" in outcome.err


def test_a_refusal_by_wechat_is_one_error_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        api: fake.FakeWeChatAPI) -> None:
    code = _enrol(capsys)
    monkeypatch.setenv("ENGAGE_WECHAT_APP_SECRET", "not-the-secret")
    outcome = run_cli(capsys, "patient", "qr", "BJ01-001", "--code", code)
    assert outcome.status == 1
    assert outcome.err.startswith("error: cannot use the WeChat API at ")
    assert "errcode 40001" in outcome.err
    assert api.qr == []


def test_the_menu_reaches_the_api_as_wechatpys_client_sends_it(
        capsys: pytest.CaptureFixture[str], api: fake.FakeWeChatAPI) -> None:
    outcome = run_cli(capsys, "wechat", "menu", "--json")
    assert outcome.status == 0, outcome.err
    (created,) = api.menus
    assert created == menu() == json.loads(outcome.out)["menu"]
    assert [(b["type"], b["name"], b["key"]) for b in created["button"]] == [
        ("click", "服药已完成", "DOSE_TAKEN"), ("click", "报告症状", "REPORT"),
        ("click", "帮助", "HELP")]
    outcome = run_cli(capsys, "wechat", "menu")
    assert outcome.status == 0, outcome.err
    assert outcome.out.startswith("the custom menu is created: 服药已完成 (DOSE_TAKEN: "
                                  "dose:taken), 报告症状 (REPORT: report:start)")

    # wechatpy's own client: the same body to the same endpoint is taken, a bad one refused.
    client = WeChatClient(fake.APP_ID, fake.APP_SECRET, timeout=5, auto_retry=False)
    client.API_BASE_URL = api.base_url + "/cgi-bin/"
    asyncio.run(asyncio.to_thread(
        client._fetch_access_token, url=api.base_url + "/cgi-bin/token",
        params={"grant_type": "client_credential", "appid": fake.APP_ID,
                "secret": fake.APP_SECRET}))
    assert client.menu.create(menu())["errcode"] == 0
    assert api.menus[-1] == menu()
    too_long = {"button": [{"type": "click", "name": "服药已经完成了吗", "key": "DOSE_TAKEN"}]}
    with pytest.raises(WeChatClientException) as refused:
        client.menu.create(too_long)
    assert refused.value.errcode == 40018
