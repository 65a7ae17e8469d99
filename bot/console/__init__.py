"""The console: a local chat in the terminal (chat.py), driven by `linli console` (interactive.py); the
harness the tests and the demo speak through."""

from bot.console.chat import SERVICE, ConsoleChat, Posted

__all__ = ["SERVICE", "ConsoleChat", "Posted"]
