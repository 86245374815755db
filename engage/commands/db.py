"""`engage db upgrade`: apply the migrations."""

from __future__ import annotations

import argparse

from engage.commands._args import command, command_group
from engage.commands.support import open_database
from engage.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    group = command_group(sub, "db", help="database maintenance")
    command(group, "upgrade", _upgrade, help="apply migrations up to the newest schema",
            json=False)


async def _upgrade(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings, migrate=True):
        print("database is at the newest schema")
    return 0
