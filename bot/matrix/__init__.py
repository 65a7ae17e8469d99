"""Matrix: matrix-nio against a homeserver (transport.py), events in (events.py), messages out (format.py),
photos kept on disk (media.py)."""

from bot.matrix.transport import SERVICE, LoginFailed, MatrixTransport

__all__ = ["SERVICE", "LoginFailed", "MatrixTransport"]
