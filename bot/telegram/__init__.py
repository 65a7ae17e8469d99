"""Telegram: python-telegram-bot against the Bot API (transport.py), texts and cards as Telegram HTML (format.py)."""

from bot.telegram.transport import SERVICE, LoginFailed, TelegramTransport

__all__ = ["SERVICE", "LoginFailed", "TelegramTransport"]
