"""The first supervisor of a community that has none: a one-time owner code.

Whoever runs Linli (`linli run` prints a code when the community has no supervisor; `linli owner-code`
makes a new one) sends the code to the bot by direct message and becomes supervisor of the whole
community. Only the code's digest is stored; it works once and for a day.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, select

from handlers.turn import Turn
from storage.models import Memo, RoleGrant

LIFETIME = timedelta(hours=24)
_MEMO = ("linli", "owner_code")
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def issue(db: Session, now: datetime) -> str:
    """A new owner code (any earlier one stops working), e.g. LINLI-7KQ3-M9XD-2HTP."""
    code = "LINLI-" + "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(3))
    row = db.get(Memo, _MEMO) or Memo(service=_MEMO[0], key=_MEMO[1], value="")
    row.value = json.dumps({"digest": _digest(code), "expires": (now + LIFETIME).isoformat()})
    db.add(row)
    db.commit()
    return code


def has_supervisor(db: Session) -> bool:
    return db.exec(select(RoleGrant.id).where(RoleGrant.role == "supervisor")).first() is not None


def claim(turn: Turn, code: str | None) -> None:
    """/认证 CODE by direct message: a valid code makes the sender supervisor of the community."""
    if not turn.incoming.is_direct:
        turn.reply("owner.direct_only")  # a code said in a group is seen by everyone there
        return
    row = turn.db.get(Memo, _MEMO)
    kept = json.loads(row.value) if row and row.value else None
    fresh = kept is not None and datetime.fromisoformat(kept["expires"]) > turn.now
    if not code or not fresh or not hmac.compare_digest(kept["digest"], _digest(code)):
        turn.reply("owner.bad")
        return
    assert row is not None and turn.person.id is not None
    turn.db.delete(row)  # once only
    grant = turn.db.exec(select(RoleGrant).where(RoleGrant.person_id == turn.person.id,
                                                 RoleGrant.role == "supervisor",
                                                 RoleGrant.grid_id == turn.community.grid_id)).first()
    if grant is None:
        turn.db.add(RoleGrant(person_id=turn.person.id, role="supervisor", grid_id=turn.community.grid_id))
    turn.reply("owner.done", community=turn.community.config.community.name)
