"""Every staff feature of this deployment, included by name: one line per feature's router.

A new feature module exposes `router = CommandRouter(...)` and adds itself here; a feature that
cannot be imported fails at start-up like any other module.
"""

from __future__ import annotations

from bot import staff_alerts, staff_media, staff_queries, staff_visits
from bot.staff_commands import StaffCommands

STAFF_COMMANDS = StaffCommands(
    staff_visits.router,
    staff_queries.router,
    staff_alerts.router,
    staff_media.router,
)
