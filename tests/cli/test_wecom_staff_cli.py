"""`engage staff add|update --wecom-userid`: a staff member on WeCom is paged there, the userid
is one person's, an empty one removes it (refused when it was their only route), all audited."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from storage.models import AuditEntry, ContactPoint
from tests.cli.support import fetch, run_cli

pytestmark = pytest.mark.usefixtures("cli_site")


def test_a_staff_member_gets_removes_and_cannot_share_a_wecom_userid(
        db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    added = run_cli(capsys, "staff", "add", "--site", "BJ01", "--role", "coordinator",
                    "--name", "张护士", "--wecom-userid", "ZhangSan", "--json")
    assert added.status == 0, added.err
    first = json.loads(added.out)["staff_id"]
    listed = json.loads(run_cli(capsys, "staff", "list", "--json").out)
    assert [(m["wecom_userid"], m["pageable"]) for m in listed] == [("ZhangSan", True)]
    assert "ZhangSan" in run_cli(capsys, "staff", "list").out

    # Another staff member cannot take the same userid.
    run_cli(capsys, "staff", "add", "--site", "BJ01", "--role", "investigator", "--name",
            "李医生", "--telegram-id", "5551")
    taken = run_cli(capsys, "staff", "update", "2", "--wecom-userid", "ZhangSan",
                    "--reason", "typo")
    assert taken.status != 0
    assert "already registered" in taken.err
    moved = run_cli(capsys, "staff", "update", "2", "--wecom-userid", "LiSi", "--reason",
                    "joined the WeCom app")
    assert moved.status == 0, moved.err
    # Removing the only route is refused; with a Telegram id to fall back on it is not.
    alone = run_cli(capsys, "staff", "update", str(first), "--wecom-userid", "",
                    "--reason", "left")
    assert alone.status != 0
    assert "to be paged" in alone.err
    gone = run_cli(capsys, "staff", "update", "2", "--wecom-userid", "", "--reason", "left")
    assert gone.status == 0, gone.err
    points = [row[0] for row in fetch(db_url, select(ContactPoint))]
    assert [(p.owner_id, p.channel, p.address) for p in points] == [(first, "wecom", "ZhangSan")]
    audited = [row[0] for row in fetch(db_url, select(AuditEntry).where(
        AuditEntry.entity == "contact_points").order_by(AuditEntry.id))]
    assert [(a.action, a.reason) for a in audited] == [("create", "staff added"),
                                                      ("create", "joined the WeCom app"),
                                                      ("delete", "left")]
