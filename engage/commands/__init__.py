"""One module per `engage` command group; each exposes `register(subparsers)`."""

# Listed here so that `engage --help` shows them all; a module that fails to import is a bug.
COMMAND_MODULES = [
    "engage.commands.db",
    "engage.commands.site",
    "engage.commands.staff",
    "engage.commands.patient",
    "engage.commands.protocol",
    "engage.commands.export",
    "engage.commands.visit",
    "engage.commands.alert",
    "engage.commands.oncall",
    "engage.commands.run",
    "engage.commands.tick",
    "engage.commands.report",
    "engage.commands.demo",
    "engage.commands.triage",
    "engage.commands.outbox",
    "engage.commands.wechat",
]
