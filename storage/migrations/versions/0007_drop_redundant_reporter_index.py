"""drop the reporter index that ix_order_reporter (reporter_id, chat_id) already serves

Every order written kept both up to date; lookups by reporter alone use the two-column index's prefix.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:10:00.000000

"""
from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_work_order_reporter_id", table_name="work_order")


def downgrade() -> None:
    op.create_index("ix_work_order_reporter_id", "work_order", ["reporter_id"], unique=False)
