"""The `linli` command (commands.py) and what it runs: the demo, the benchmarks, the 台账 export."""

from bot.cli.commands import app

__all__ = ["app"]
