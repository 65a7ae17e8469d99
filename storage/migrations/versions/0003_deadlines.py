"""milestones, pauses, outbox leases and digests

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:50:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDER_TIMES = ("arrived_at", "planned_at", "paused_at", "on_scene_due", "plan_due", "report_back_due")


def upgrade() -> None:
    with op.batch_alter_table("work_order") as table:
        for name in ORDER_TIMES:
            table.add_column(sa.Column(name, sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table("outbox") as table:
        table.add_column(sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        table.add_column(sa.Column("claimed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_table(
        "digest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "target", "period"),
    )


def downgrade() -> None:
    op.drop_table("digest")
    with op.batch_alter_table("outbox") as table:
        table.drop_column("claimed_until")
        table.drop_column("claimed_by")
    with op.batch_alter_table("work_order") as table:
        for name in reversed(ORDER_TIMES):
            table.drop_column(name)
