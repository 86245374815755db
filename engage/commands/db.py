"""`engage db upgrade`: apply the migrations."""

from __future__ import annotations

import argparse

from engage.commands.support import open_database
from engage.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations up to the newest schema")
    up.set_defaults(handler=_upgrade)


async def _upgrade(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings, migrate=True):
        print("database is at the newest schema")
    return 0
