"""an index for the duplicate finder

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 13:20:00.000000

"""
from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_order_grid_category", "work_order", ["grid_id", "category", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_order_grid_category", table_name="work_order")
