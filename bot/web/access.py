"""Who may see what on the web: per-person login tokens and the grids each person oversees.

A token is shown once (`linli web token NAME` prints it in a login link); the database keeps only its
SHA-256 digest, so a copy of the database cannot be used to log in. Tokens are 32 random bytes, so a
plain digest is enough: there is nothing to guess.

A dispatcher (书记, 网格长) or supervisor (督办) sees every grid below each grid they hold a role on,
within the community the web serves. Anyone else sees nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from storage.models import Grid, Person, RoleGrant, WebToken

ROLES = ("dispatcher", "supervisor")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(db: Session, person: Person, now: datetime) -> str:
    """A new login token for `person`; only its digest is stored."""
    token = secrets.token_urlsafe(32)
    db.add(WebToken(person_id=person.id or 0, digest=digest(token), created_at=now))
    db.commit()
    return token


def revoke_tokens(db: Session, person: Person, now: datetime) -> int:
    """Revoke every live token of `person`; how many there were."""
    result = db.execute(
        update(WebToken)
        .where(col(WebToken.person_id) == person.id, col(WebToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    db.commit()
    return result.rowcount or 0  # type: ignore[attr-defined]


def person_for_token(db: Session, token: str, now: datetime) -> Person | None:
    if not token or len(token) > 256:
        return None
    found = db.exec(select(WebToken).where(WebToken.digest == digest(token))).first()
    if found is None or found.revoked_at is not None:
        return None
    if found.last_used_at is None or (now - found.last_used_at).total_seconds() > 60:
        found.last_used_at = now  # to the minute: enough to see which links are in use
        db.add(found)
        db.commit()
    return db.get(Person, found.person_id)


@dataclass(frozen=True)
class Viewer:
    """A logged-in person and the grids they may see."""

    person_id: int
    name: str
    role: str  # supervisor or dispatcher: the highest they hold
    grids: tuple[Grid, ...]  # the grids they hold a role on, within the community
    grid_ids: frozenset[int]  # those grids and everything below them
    whole_community: bool

    @property
    def role_label(self) -> str:
        return "督办" if self.role == "supervisor" else "书记 / 网格长"

    def sees(self, grid_id: int) -> bool:
        return grid_id in self.grid_ids

    def grid_filter(self) -> list[int] | None:
        """For `handlers.stats`: None when the viewer sees the whole community, so totals match `linli stats`."""
        return None if self.whole_community else sorted(self.grid_ids)


def viewer_for(db: Session, person: Person, community_id: int) -> Viewer | None:
    """The person's view of the community, or None when they hold no role over any part of it."""
    grants = db.exec(
        select(RoleGrant.role, Grid)
        .join(Grid, col(Grid.id) == RoleGrant.grid_id)
        .where(RoleGrant.person_id == person.id, col(RoleGrant.role).in_(ROLES))
    ).all()
    community = db.get(Grid, community_id)
    if not grants or community is None:
        return None
    inside = list(db.exec(select(Grid).where(Grid.community_id == community_id)))
    seen: set[int] = set()
    held: list[Grid] = []
    roles: set[str] = set()
    for role, grid in grants:
        below = [g.id for g in inside if g.id is not None and g.path.startswith(grid.path)]
        if below:
            seen.update(below)
            roles.add(role)
            held.append(community if grid.level == "street" else grid)
    if not seen:
        return None
    return Viewer(
        person_id=person.id or 0,
        name=person.name,
        role="supervisor" if "supervisor" in roles else "dispatcher",
        grids=tuple(sorted({g.id: g for g in held}.values(), key=lambda g: g.path)),
        grid_ids=frozenset(seen),
        whole_community=community_id in seen,
    )
