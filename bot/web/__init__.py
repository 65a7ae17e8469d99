"""`linli web`: the supervisors' dashboard, order pages, JSON API and Open311 (see bot/web/app.py)."""

from bot.web.app import create_app

__all__ = ["create_app"]
