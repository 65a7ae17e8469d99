"""the inbox: updates stored before they are acknowledged, lane leases, and three indexes of the hot path

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:30:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("lane", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("handled_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("service", "key"),
    )
    op.create_index("ix_inbox_waiting", "inbox", ["handled_at", "service", "lane"], unique=False)
    op.create_table(
        "lanelease",
        sa.Column("service", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("lane", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("service", "lane"),
    )


    op.create_index("ix_order_reporter", "work_order", ["reporter_id", "chat_id"], unique=False)
    op.create_index("ix_prompt_person", "prompt", ["person_id", "kind"], unique=False)
    op.create_index("ix_event_actor_at", "event", ["actor_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_event_actor_at", table_name="event")
    op.drop_index("ix_prompt_person", table_name="prompt")
    op.drop_index("ix_order_reporter", table_name="work_order")
    op.drop_table("lanelease")
    op.drop_index("ix_inbox_waiting", table_name="inbox")
    op.drop_table("inbox")
