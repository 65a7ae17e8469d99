"""`python -m bot.cli`: the `linli` command."""

from bot.cli.commands import app

app()
