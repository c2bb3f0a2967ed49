"""Budget forcing: a judgment whose thinking reached its budget and was closed by the engine says so
(``forced_close``) and after how many generated tokens (``forced_at``).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("judgments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("forced_close", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("forced_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("judgments", schema=None) as batch_op:
        batch_op.drop_column("forced_at")
        batch_op.drop_column("forced_close")
